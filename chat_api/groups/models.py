"""Groups, their members and their messages as stored in MongoDB, and the one builder of a group and of a membership."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from beanie import Document
from bson import ObjectId
from pymongo import IndexModel

from chat_api.messages.models import StoredMessage
from chat_api.store.keys import ascending

Identity = Literal["lord", "admin", "user"]


class Group(Document):
    group_name: str
    group_desc: str | None = None
    group_avatar: str | None = None
    group_placard: str | None = None
    lord_id: str
    created_at: datetime
    # The counter that numbers the group's messages 1, 2, 3...: the last number taken.
    last_n: int = 0
    # The newest delivered message (a summary) and its number, for the conversation list.
    last_message: dict[str, Any] | None = None
    message_n: int = 0
    # The number of the newest message that mentioned everyone (`@all`), written with `message_n`: a member's
    # conversation shows `mentioned` while it is above their read position (docs/decisions.md#mentions).
    all_mention_n: int = 0
    # Set when the lord deletes the group: from then on it is a tombstone that every route answers
    # 404 for, and its members, messages and events are purged; the tombstone itself goes at this
    # time (epoch ms; an int because nx-27017 turns dates written by $set into strings).
    purge_after_ms: int | None = None

    class Settings:
        name = "groups"
        # The sweeper's one query: the tombstones (docs/reliability.md#deleting-a-group).
        indexes: ClassVar[list[IndexModel]] = [ascending("purge_after_ms")]


class GroupMember(Document):
    group_id: str
    user_id: str
    identity: Identity = "user"
    joined_at: datetime
    read_n: int = 0  # number of the newest group message this member has read
    muted: bool = False  # the member muted the group: GET /api/conversations/unread counts it apart
    # The number of the newest message that named this member (`mentions`), and the number of the newest
    # `@all` this member sent themselves (their own call to everyone marks the calls up to it seen).
    mention_n: int = 0
    mentions_seen_n: int = 0
    # The group's last message number when they joined (absent on memberships older than issue 13: `joined_at`).
    joined_n: int | None = None

    class Settings:
        name = "group_members"
        indexes: ClassVar[list[IndexModel]] = [
            ascending("group_id", "user_id", unique=True),
            ascending("user_id", "group_id"),
        ]


class GroupMessage(StoredMessage):
    group_id: str

    class Settings:
        name = "group_messages"
        indexes: ClassVar[list[IndexModel]] = [ascending("group_id", "n", unique=True), *StoredMessage.SHARED_INDEXES]


class GroupPin(Document):
    """A pinned message of a group: at most MAX_PINS per group, one per `slot` (0 to MAX_PINS - 1) under a unique
    index, so that concurrent pins can never pass the limit (docs/reliability.md#pins)."""

    group_id: str
    message_key: str  # the pinned message's public id
    slot: int
    pinned_by: str
    pinned_at: datetime

    class Settings:
        name = "group_pins"
        indexes: ClassVar[list[IndexModel]] = [
            ascending("group_id", "message_key", unique=True),
            ascending("group_id", "slot", unique=True),
        ]


# How many messages a group may have pinned at once.
MAX_PINS = 50


def new_group_doc(fields: dict[str, Any], lord_id: str, now: datetime) -> dict[str, Any]:
    """A group as stored: its own `fields` (name, description, avatar, placard), no message yet."""
    return {
        "_id": ObjectId(),
        **fields,
        "lord_id": lord_id,
        "created_at": now,
        "last_n": 0,
        "last_message": None,
        "message_n": 0,
    }


def new_member_doc(
    group_id: str, user_id: str, identity: Identity, now: datetime, read_n: int = 0, joined_n: int = 0
) -> dict[str, Any]:
    """A membership as stored; `read_n` is the number of the newest message the member has read (what
    was said before they joined counts as read); `joined_n` the group's last message number when they joined
    (the messages numbered above it were sent to them: `/reads`)."""
    return {
        "group_id": group_id,
        "user_id": user_id,
        "identity": identity,
        "joined_at": now,
        "read_n": read_n,
        "muted": False,
        "joined_n": joined_n,
    }


def new_pin_doc(group_id: str, message_key: str, slot: int, pinned_by: str, now: datetime) -> dict[str, Any]:
    """A pin as stored: the message `message_key` of the group, in its `slot`."""
    return {
        "_id": ObjectId(),
        "group_id": group_id,
        "message_key": message_key,
        "slot": slot,
        "pinned_by": pinned_by,
        "pinned_at": now,
    }
