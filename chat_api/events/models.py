"""The event log: numbered per partition, one stored event per message or notice, read for delivery and resume."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal

from beanie import Document
from bson import ObjectId
from pydantic import Field
from pymongo import IndexModel

from chat_api.store.keys import ascending

EventType = Literal[
    "message",
    "group_message",
    "message_recalled",
    "message_edited",
    "reaction",
    "read",
    "pin",
    "friend_request",
    "presence",
    "typing",
    "logout",
    "group_joined",
    "group_left",
    "group_lord_changed",
    "group_deleted",
]
# Events addressed to a group, not to users: stored once per partition, each process delivers them to the
# members it holds sockets for (docs/reliability.md#the-event-log).
GROUP_ONLY_TYPES: frozenset[str] = frozenset({"group_message", "group_lord_changed", "group_deleted"})
# What happens to a message (and a pin) goes to a group's members as a group event, or to a direct
# conversation's two participants as an addressed one.
GROUP_EVENT_TYPES: frozenset[str] = GROUP_ONLY_TYPES | {"message_recalled", "message_edited", "reaction", "pin"}
# Ephemeral: never numbered, never in the durable log when Redis carries them (events.service.signal).
SIGNAL_TYPES: frozenset[str] = frozenset({"typing", "presence"})
# Without Redis, signals travel through the store in a partition of their own, never read for resume.
SIGNALS_PARTITION = -1
# Events are kept at least this long; a resume from before the oldest kept event is a resync.
RETENTION_SECONDS = 7 * 24 * 3600
# Signals matter for seconds: the pruner deletes them after this.
SIGNAL_RETENTION_SECONDS = 600


def partition_of(user_id: str, partitions: int) -> int:
    """A user's home partition: every event the user receives is numbered there (crc32: stable across processes,
    unlike `hash()`)."""
    if partitions <= 1:
        return 0
    return zlib.crc32(user_id.encode()) % partitions


class Event(Document):
    # The partition and its sequence number: a unique pair (numbers come from `EventCounter`, so two
    # publishers never pick the same one). A client's resume token is the `seq` of its home partition.
    p: int
    seq: int
    type: EventType
    # The recipients in this partition (hex strings: nx-27017 does not match ObjectIds outside `_id` with
    # $eq); empty for an event addressed to a group, which names the group instead.
    to: list[str] = Field(default_factory=list)
    group: str | None = None
    data: dict[str, Any]
    # Delivered live, never replayed on resume nor listed by /api/events (logout, and signals without Redis).
    transient: bool = False
    created_at: datetime

    class Settings:
        name = "events"
        indexes: ClassVar[list[IndexModel]] = [
            ascending("p", "seq", unique=True),
            # Not a TTL index: nx-27017 purges a TTL collection on every read by scanning all of it.
            # `events.service.prune` deletes expired events instead, on both stores.
            ascending("created_at"),
            # A deleted group's events are found by it and redacted (events.service.redact_group_events).
            ascending("data.group_id"),
        ]


class EventCounter(Document):
    # One per partition (`_id` is the partition number): the last sequence number taken there.
    id: int  # type: ignore[assignment]
    seq: int

    class Settings:
        name = "event_counters"


def new_event_doc(
    partition: int,
    seq: int,
    type_: EventType,
    data: dict[str, Any],
    *,
    to: Sequence[str] = (),
    group: str | None = None,
    transient: bool,
    now: datetime,
    event_id: ObjectId | None = None,
) -> dict[str, Any]:
    """An event as stored: addressed to users of one partition (each named once) or to a group."""
    return {
        "_id": event_id or ObjectId(),
        "p": partition,
        "seq": seq,
        "type": type_,
        "to": list(dict.fromkeys(to)),
        "group": group,
        "data": data,
        "transient": transient,
        "created_at": now,
    }
