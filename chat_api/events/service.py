"""Writing to and reading from the event log; no HTTP here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from chat_api.events.models import Event, EventType
from chat_api.users.service import utc_now

MAX_SEQ_ATTEMPTS = 50


async def newest_seq() -> int:
    """The highest sequence number in the log, 0 when it is empty."""
    doc = await Event.get_pymongo_collection().find_one({}, {"seq": 1}, sort=[("seq", DESCENDING)])
    return int(doc["seq"]) if doc else 0


async def publish(type_: EventType, recipients: Sequence[str], data: dict[str, Any], *, transient: bool = False) -> int:
    """Store one event for all its recipients and return its sequence number.

    The number is the newest one plus one; the unique index on `seq` refuses a number another
    writer took first, and the loser tries the next one. So an event is committed only after
    every lower number, and a reader tailing by `seq` never skips one that shows up late.
    """
    collection = Event.get_pymongo_collection()
    seq = await newest_seq() + 1
    for _ in range(MAX_SEQ_ATTEMPTS):
        doc = {
            "seq": seq,
            "type": type_,
            "recipients": list(dict.fromkeys(recipients)),
            "data": data,
            "transient": transient,
            "created_at": utc_now(),
        }
        try:
            await collection.insert_one(doc)
            return seq
        except DuplicateKeyError:
            seq = max(seq + 1, await newest_seq() + 1)
    raise RuntimeError("could not allocate an event sequence number")
