"""`GET /api/events`: the caller's stored events after a seq, the same ones a WebSocket resume replays."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from chat_api.auth.decorators import protected
from chat_api.events.service import encode, events_after, resumable
from chat_api.exceptions import Unprocessable
from chat_api.openapi import document
from chat_api.validation import MAX_INT64, StrictModel, validate_query, whole_number

bp = Blueprint("events", url_prefix="/api", strict_slashes=False)
RESYNC = "resync_required: events after this seq are no longer kept (or it was never given out); refetch over REST"


class EventQuery(StrictModel):
    after: Annotated[int, Field(ge=0, le=MAX_INT64, description="The last seq the client has (default 0)")] = 0
    limit: Annotated[int, Field(ge=1, le=200, description="How many events, 1 to 200 (default 50)")] = 50

    @field_validator("after", "limit", mode="before")
    @classmethod
    def digits(cls, value: object) -> int:
        return whole_number(value, minimum=0)


class EventOut(BaseModel):
    """An event as a WebSocket frame: its `type` and `seq`, then its own fields (`message`, `request`...)."""

    model_config = ConfigDict(extra="allow")
    type: str
    seq: int


SCHEMA_MODELS: list[type[BaseModel]] = [EventOut]


@bp.get("/events")
@document(
    tag="events",
    query=EventQuery,
    responses={200: (EventOut, "The caller's stored events after `after`, oldest first", "many")},
    headers={
        200: {
            "X-Has-More": "`true` when more events follow the last one: ask again with after=<its seq>",
            "X-Newest-Seq": "The newest seq of the log when the page was read",
        }
    },
    errors=(400, 401, 422),
)
@protected
@validate_query(EventQuery)
async def list_events(request: Request, query: EventQuery) -> HTTPResponse:
    """Stored events (messages, group messages, friend requests) after a seq; 422 when a resync is needed."""
    user_id = str(request.ctx.user.id)
    ok, newest = await resumable(query.after)
    if not ok:
        raise Unprocessable(RESYNC)
    # One more than asked tells whether there is more, without a count.
    page = await events_after(user_id, query.after, query.limit + 1)
    more = len(page) > query.limit
    return json(
        page[: query.limit],
        headers={"X-Has-More": "true" if more else "false", "X-Newest-Seq": str(newest)},
        dumps=encode,
    )
