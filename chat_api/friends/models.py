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
    # The owner's side of the direct conversation: the newest delivered message (a summary) and its
    # number in the conversation (0: none yet), and the number of the newest message the owner has
    # read. Unread is counted from `read_n` (docs/decisions.md, "Message numbers").
    last_message: dict[str, Any] | None = None
    message_n: int = 0
    read_n: int = 0
    # The friend deleted their account: this side stays as the owner's read-only conversation with them,
    # no longer a friendship (not listed, not counted, no messages). Written only as true, by accounts.service,
    # and absent on every other document: queries test its absence (friends.repository.LIVE).
    friend_deleted: bool = False
    # The owner muted this conversation: its unread count goes to `muted` in GET /api/conversations/unread.
    muted: bool = False
    # How far the friend has read (their `read_n`) and the id of that message: written here by the friend's
    # mark-read, so the owner's conversation list shows it with no read of the friend's side (absent on
    # friendships stored before issue 13: queries allow for that, friends.repository.mark_read).
    peer_read_n: int = 0
    peer_read_up_to: str | None = None

    class Settings:
        name = "friendships"
        indexes: ClassVar[list[IndexModel]] = [ascending("owner_id", "friend_id", unique=True), ascending("pair")]


class DirectConversation(Document):
    """The counter of a pair's direct conversation, which numbers its messages 1, 2, 3...

    Its own document, keyed by the pair, because the friendships are deleted on unfriend while the
    messages stay, and friends again continue the numbering where it stopped.
    """

    id: str  # type: ignore[assignment]  # the pair key
    last_n: int = 0  # the last number taken (a message may hold it yet, or never: a hole)
    # The pair's two ids (the lower, the higher), each indexed: a user's conversations, friends or not
    # any more, are found without a scan (the export). Two fields rather than an array: nx-27017 indexes
    # an array as one value (docs/store.md).
    low_id: str | None = None
    high_id: str | None = None

    class Settings:
        name = "direct_conversations"
        indexes: ClassVar[list[IndexModel]] = [ascending("low_id"), ascending("high_id")]


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


def new_friendship_docs(a: str, b: str, now: datetime, read_n: int = 0) -> list[dict[str, Any]]:
    """Both sides of a new friendship as stored, `a`'s first: no message shown yet, and read up to
    `read_n` (the pair's last number: what was said before, when they were friends once, is read)."""
    pair = pair_key(a, b)
    return [
        {"_id": ObjectId(), "owner_id": owner, "friend_id": friend, "pair": pair, "created_at": now}
        | {"last_message": None, "message_n": 0, "read_n": read_n, "muted": False}
        | {"peer_read_n": 0, "peer_read_up_to": None}
        for owner, friend in ((a, b), (b, a))
    ]


def new_direct_conversation_doc(pair: str, last_n: int) -> dict[str, Any]:
    """A pair's conversation counter as stored, its last number taken `last_n` (messages take theirs
    with `friends.repository.take_number`, which creates it on the first)."""
    return {"_id": pair, "last_n": last_n, **pair_ends(pair)}


def pair_ends(pair: str) -> dict[str, str]:
    """The two ids of a pair key, as its conversation counter keeps them (`low_id`, `high_id`)."""
    low, high = pair.split(":")
    return {"low_id": low, "high_id": high}
