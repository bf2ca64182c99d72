"""Request and response models of `GET /api/events`."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from chat_api.common.fields import DIGITS_ONLY, MAX_INT64, StrictModel


class EventQuery(StrictModel):
    after: Annotated[
        int, Field(ge=0, le=MAX_INT64, description="The last seq the client has (default 0)"), DIGITS_ONLY
    ] = 0
    limit: Annotated[int, Field(ge=1, le=200, description="How many events, 1 to 200 (default 50)"), DIGITS_ONLY] = 50


class EventOut(BaseModel):
    """An event as a WebSocket frame: its `type` and `seq`, then its own fields (`message`, `request`...)."""

    model_config = ConfigDict(extra="allow")
    type: str
    seq: int
