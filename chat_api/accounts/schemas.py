"""The query of `DELETE /api/users/<id>`."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from chat_api.common.fields import StrictModel


class AccountDeletionQuery(StrictModel):
    erase: Annotated[
        bool,
        Field(description="Right to erasure: also blank every message the account sent and delete its files"),
    ] = False
