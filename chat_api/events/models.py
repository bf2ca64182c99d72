"""The event log: one stored event per message or notice, read by every worker's delivery loop."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal

from beanie import Document
from pymongo import IndexModel

from chat_api.store.keys import ascending

EventType = Literal[
    "message",
    "group_message",
    "friend_request",
    "presence",
    "typing",
    "logout",
    "group_lord_changed",
    "group_deleted",
]
# Events are kept at least this long; a resume from before the oldest kept event is a resync.
RETENTION_SECONDS = 7 * 24 * 3600


class Event(Document):
    # One sequence shared by every event; a unique index makes two writers that picked the same
    # number clash (the loser retries), so events become visible in sequence order.
    seq: int
    type: EventType
    # User ids (hex strings: nx-27017 does not match ObjectIds outside `_id` with $eq).
    # One event per message whatever the number of recipients.
    recipients: list[str]
    data: dict[str, Any]
    # Delivered live, never replayed on resume nor listed by /api/events (typing, presence, logout).
    transient: bool = False
    created_at: datetime

    class Settings:
        name = "events"
        indexes: ClassVar[list[IndexModel]] = [
            ascending("seq", unique=True),
            ascending("recipients", "seq"),
            # Not a TTL index: nx-27017 purges a TTL collection on every read by scanning all of it
            # (a tail read took 3 ms at 1,000 events, 31 ms at 20,000), and every worker reads this
            # log every 15 ms. `events.service.prune` deletes expired events instead, on both stores.
            ascending("created_at"),
            # A deleted group's events are found by it and redacted (events.service.redact_group_events).
            ascending("data.group_id"),
        ]


def new_event_doc(
    seq: int, type_: EventType, recipients: Sequence[str], data: dict[str, Any], *, transient: bool, now: datetime
) -> dict[str, Any]:
    """An event as stored: one for all its recipients (each named once)."""
    return {
        "seq": seq,
        "type": type_,
        "recipients": list(dict.fromkeys(recipients)),
        "data": data,
        "transient": transient,
        "created_at": now,
    }
