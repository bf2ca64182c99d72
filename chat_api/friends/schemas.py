"""Request and response models for friend requests and friends."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, TypeAdapter

from chat_api.common.fields import StoredTime, StrictModel
from chat_api.friends.models import RequestStatus
from chat_api.users.schemas import UserPublic

MAX_VERIFY_DATA = 200
# Any string: an id that is not 24 hex digits names no user, which is a 404 like an unknown one.
UserIdField = Annotated[str, StringConstraints(max_length=64), Field(description="The other user's id")]


class FriendRequestCreate(StrictModel):
    to_id: UserIdField
    verify_data: Annotated[
        str, StringConstraints(max_length=MAX_VERIFY_DATA), Field(description="A note for the recipient, may be empty")
    ] = ""


class FriendRequestCreated(BaseModel):
    user_request_id: str


class FriendRequestAnswer(StrictModel):
    status: Literal["agree", "refuse"]


class FriendRequestPublic(BaseModel):
    """A request as the API shows it, in lists and in `friend_request` events."""

    user_request_id: str
    from_id: str
    to_id: str
    verify_data: str
    status: RequestStatus
    created_at: StoredTime
    answered_at: StoredTime | None

    @classmethod
    def from_stored(cls, doc: Mapping[str, Any]) -> FriendRequestPublic:
        return cls(
            user_request_id=str(doc["_id"]),
            from_id=doc["from_id"],
            to_id=doc["to_id"],
            verify_data=doc.get("verify_data", ""),
            status=doc["status"],
            created_at=doc["created_at"],
            answered_at=doc.get("answered_at"),
        )


class WaitingRequest(FriendRequestPublic):
    """A waiting request of mine, with the other user's public profile (the sender's if incoming)."""

    direction: Literal["incoming", "outgoing"]
    user: UserPublic


WAITING_LIST: TypeAdapter[list[WaitingRequest]] = TypeAdapter(list[WaitingRequest])
