"""Friend requests and friendships as stored, and the one builder of each; user ids are hex strings (docs/store.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from beanie import Document
from bson import ObjectId
from pymongo import IndexModel

from chat_api.store.keys import ascending

RequestStatus = Literal["waiting", "agree", "refuse"]


def pair_key(a: str, b: str) -> str:
    """The same key for both directions between two users."""
    return f"{a}:{b}" if a < b else f"{b}:{a}"


class UserRequest(Document):
    from_id: str
    to_id: str
    verify_data: str
    status: RequestStatus = "waiting"
    # While waiting: the pair key, so a unique index allows one waiting request per pair in
    # either direction. Once answered: the request's own id. (A partial or sparse unique index
    # would say this directly, but nx-27017 drops both options silently.)
    pending_key: str
    created_at: datetime
    answered_at: datetime | None = None

    class Settings:
        name = "user_requests"
        indexes: ClassVar[list[IndexModel]] = [
            ascending("pending_key", unique=True),
            ascending("to_id", "status"),
            ascending("from_id", "status"),
        ]


class Friendship(Document):
    """One document per direction: `owner_id`'s view of their friend, and of their conversation."""

    owner_id: str
    friend_id: str
    pair: str  # pair_key(owner_id, friend_id), the same on both documents
    created_at: datetime
    # The owner's side of the direct conversation: the newest message (a summary), its ordering
    # key, how many arrived unread, and the key of the newest message they have read.
    last_message: dict[str, Any] | None = None
    last_key: str | None = None
    unread: int = 0
    read_key: str = ""
    # The friend deleted their account: this side stays as the owner's read-only conversation with them,
    # no longer a friendship (not listed, not counted, no messages). Written only as true, by accounts.service,
    # and absent on every other document: queries test its absence (friends.repository.LIVE).
    friend_deleted: bool = False

    class Settings:
        name = "friendships"
        indexes: ClassVar[list[IndexModel]] = [ascending("owner_id", "friend_id", unique=True), ascending("pair")]


def new_request_doc(from_id: str, to_id: str, verify_data: str, now: datetime) -> dict[str, Any]:
    """A waiting friend request as stored."""
    return {
        "_id": ObjectId(),
        "from_id": from_id,
        "to_id": to_id,
        "verify_data": verify_data,
        "status": "waiting",
        "pending_key": pair_key(from_id, to_id),
        "created_at": now,
        "answered_at": None,
    }


def new_friendship_docs(a: str, b: str, now: datetime) -> list[dict[str, Any]]:
    """Both sides of a new friendship as stored, `a`'s first: no messages yet, nothing unread."""
    pair = pair_key(a, b)
    return [
        {"_id": ObjectId(), "owner_id": owner, "friend_id": friend, "pair": pair, "created_at": now}
        | {"last_message": None, "last_key": None, "unread": 0, "read_key": ""}
        for owner, friend in ((a, b), (b, a))
    ]
