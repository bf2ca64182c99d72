"""Response models of the blocks routes."""

from __future__ import annotations

from pydantic import Field, TypeAdapter

from chat_api.common.fields import StoredTime
from chat_api.users.schemas import UserPublic


class BlockedUser(UserPublic):
    """A user I block: their public profile, and since when."""

    blocked_at: StoredTime = Field(description="When I blocked them")


BLOCKED_LIST: TypeAdapter[list[BlockedUser]] = TypeAdapter(list[BlockedUser])
