"""Writing to and reading from the event log: every query of `events`; no HTTP here.

The hub's loops pass the collection of their own client (`events`); requests use the app's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from chat_api.common.clock import utc_now
from chat_api.events.models import RETENTION_SECONDS, Event, EventType, new_event_doc

MAX_SEQ_ATTEMPTS = 50
Events = AsyncCollection[dict[str, Any]]
REDACTED: dict[str, Any] = {"recipients": [], "data": {}}
TAIL_PROJECTION = {"seq": 1, "type": 1, "recipients": 1, "data": 1}


def _events(events: Events | None) -> Events:
    return events if events is not None else Event.get_pymongo_collection()


async def newest_event(events: Events | None = None) -> dict[str, Any] | None:
    """The event with the highest sequence number (its `seq` and `_id`), None when the log is empty."""
    return await _events(events).find_one({}, {"seq": 1}, sort=[("seq", DESCENDING)])


async def newest_seq(events: Events | None = None) -> int:
    """The highest sequence number in the log, 0 when it is empty."""
    doc = await newest_event(events)
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
        doc = new_event_doc(seq, type_, recipients, data, transient=transient, now=utc_now())
        try:
            await collection.insert_one(doc)
            return seq
        except DuplicateKeyError:
            seq = max(seq + 1, await newest_seq() + 1)
    raise RuntimeError("could not allocate an event sequence number")


async def prune(events: AsyncCollection[dict[str, Any]], now: datetime | None = None) -> int:
    """Delete the events older than the retention period; returns how many.

    Every worker runs it now and then (the hub); deleting what another worker already deleted
    is harmless. Served by `created_at_1`.
    """
    cutoff = (now or utc_now()) - timedelta(seconds=RETENTION_SECONDS)
    result = await events.delete_many({"created_at": {"$lt": cutoff}})
    return result.deleted_count


async def redact_group_events(group_id: str, events: Events | None = None) -> int:
    """Empty every event of a deleted group but its `group_deleted` notice: no recipients (so no
    delivery, no replay) and no data. Redacted rather than deleted, so the log keeps its numbers
    without gaps (the tail's reset check and `resumable` rely on them). Served by `data.group_id_1`."""
    query = {"data.group_id": {"$eq": group_id}, "type": {"$ne": "group_deleted"}}
    result = await _events(events).update_many(query, {"$set": REDACTED})
    return result.modified_count


async def redact_event(seq: int) -> None:
    """Empty one event: a group message published while its group was being deleted."""
    await Event.get_pymongo_collection().update_one({"seq": seq}, {"$set": REDACTED})


async def oldest_seq(events: Events | None = None) -> int | None:
    """The lowest sequence number still stored (older ones expired), None when the log is empty."""
    doc = await _events(events).find_one({}, {"seq": 1}, sort=[("seq", ASCENDING)])
    return int(doc["seq"]) if doc else None


async def tail(events: Events, after: int, limit: int) -> list[dict[str, Any]]:
    """Every event after `after` (transient ones too), in seq order (`seq_1`): what the delivery loop dispatches."""
    cursor = events.find({"seq": {"$gt": after}}, TAIL_PROJECTION).sort("seq", ASCENDING).limit(limit).batch_size(limit)
    return await cursor.to_list()


async def event_id_at(events: Events, seq: int) -> object | None:
    """The `_id` of the event numbered `seq`, None if there is none (it expired, or the log restarted)."""
    doc = await events.find_one({"seq": seq}, {"_id": 1})
    return None if doc is None else doc["_id"]


async def resumable(after: int) -> tuple[bool, int]:
    """Whether every stored event after `after` is still there, and the newest sequence number.

    Numbers come without gaps (see `publish`), so the events after `after` are all kept when
    the oldest stored one is at most `after + 1`. A number above the newest is one this log
    never gave out (another deployment's, or a log that was wiped): the client must resync.
    """
    newest, oldest = await newest_seq(), await oldest_seq()
    if after > newest:
        return False, newest
    return (oldest is None or oldest <= after + 1), newest


async def events_after(user_id: str, after: int, limit: int) -> list[dict[str, Any]]:
    """The stored (not transient) events of a user after `after`, oldest first, as frames.

    A plain equality on the array: MongoDB serves it with the multikey `recipients_1_seq_1`.
    nx-27017 indexes an array as one value, so there `{"$eq": ...}` takes that index and finds
    nothing at all; the plain form walks `seq_1` from `after` and looks inside each array,
    which costs the events after `after`, not the whole log (docs/store.md).
    """
    cursor = (
        Event.get_pymongo_collection()
        .find(
            backlog_filter(user_id, after),
            {"_id": 0, "seq": 1, "type": 1, "data": 1},
        )
        .sort("seq", ASCENDING)
        .limit(limit)
        .batch_size(limit)
    )
    return [frame(doc) for doc in await cursor.to_list()]


def backlog_filter(user_id: str, after: int) -> dict[str, Any]:
    return {"recipients": user_id, "seq": {"$gt": after}, "transient": {"$ne": True}}


def frame(doc: dict[str, Any]) -> dict[str, Any]:
    """What a client receives for a stored event: its type and seq, then its data."""
    message: dict[str, Any] = {"type": doc["type"], "seq": doc["seq"]}
    message.update((key, value) for key, value in doc["data"].items() if key not in message)
    return message


def encode(message: Any) -> str:
    """Compact JSON; datetimes (stored ones come back as datetime objects) in ISO 8601."""
    return json.dumps(message, default=_json_default, separators=(",", ":"), ensure_ascii=False)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
