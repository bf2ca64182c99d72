"""Writing to and reading from the event log: every query of `events` and `event_counters`; no HTTP here.

Numbers are taken from a counter per partition (`$inc`, one command, never a duplicate-key retry), then
the event is inserted with that number. So numbers can commit out of order, and a publisher that dies
in between leaves a hole: readers wait a bounded time at a hole before passing it
(realtime.hub, docs/reliability.md#the-event-log). Reads for delivery and resume ask for majority-committed
data from the primary whatever the connection string says: an event a failover could roll back is never
delivered, and a secondary's older snapshot never hides one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, ReadPreference, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, PyMongoError
from pymongo.read_concern import ReadConcern

from chat_api.common.clock import utc_now
from chat_api.events.models import (
    GROUP_EVENT_TYPES,
    GROUP_ONLY_TYPES,
    RETENTION_SECONDS,
    SIGNAL_RETENTION_SECONDS,
    SIGNAL_TYPES,
    SIGNALS_PARTITION,
    Event,
    EventCounter,
    EventType,
    new_event_doc,
    partition_of,
)
from chat_api.metrics import registry as metrics

log = logging.getLogger("chat_api.events")

Events = AsyncCollection[dict[str, Any]]
REDACTED: dict[str, Any] = {"to": [], "group": None, "data": {}}
DELIVERY_PROJECTION = {"p": 1, "seq": 1, "type": 1, "to": 1, "group": 1, "data": 1, "transient": 1}
# What the hub reads of an event: its creation too, the start of its delivery lag (chat_api.metrics).
FEED_PROJECTION = {**DELIVERY_PROJECTION, "created_at": 1}
# A store error while numbering or inserting is retried this many times, after a jittered pause, within
# the request's own store timeout: an election or a dropped connection, not a store that is down.
PUBLISH_ATTEMPTS = 4
DUPLICATE_KEY = 11000
RETRY_PAUSE = 0.05


class PublishFailed(Exception):
    """The event could not be stored after bounded retries; what it announces is stored already."""


Sink = Callable[[list[dict[str, Any]]], Awaitable[None]]


@dataclass
class LogConfig:
    """Set once per process at start-up (realtime.hub): the partition count and where events go next."""

    partitions: int = 1
    # After an event is stored: the process's own hub, and Redis when there is one.
    fanout: Sink | None = None
    # Ephemeral signals: through Redis when there is one (the hub's), else None: stored in the signals partition.
    signal_sink: Sink | None = None
    retries: int = 0  # numbering/insert retries after a store error, for the tests and the benchmark


config = LogConfig()


def configure(partitions: int, fanout: Sink | None = None, signal_sink: Sink | None = None) -> None:
    config.partitions, config.fanout, config.signal_sink = max(1, partitions), fanout, signal_sink


def home_partition(user_id: str) -> int:
    return partition_of(user_id, config.partitions)


def _events() -> Events:
    return Event.get_pymongo_collection()


def _counters() -> Events:
    return EventCounter.get_pymongo_collection()


def reads(collection: Events) -> Events:
    """The collection as delivery and resume read it: majority-committed, from the primary."""
    return collection.with_options(read_concern=ReadConcern("majority"), read_preference=ReadPreference.PRIMARY)


async def _retrying(attempt: Callable[[], Awaitable[Any]]) -> Any:
    for tries in range(PUBLISH_ATTEMPTS):
        try:
            return await attempt()
        except PyMongoError as error:  # a DuplicateKeyError too: two first upserts of one counter, the loser retries
            if tries == PUBLISH_ATTEMPTS - 1:
                raise PublishFailed(str(error)) from error
            config.retries += 1
            log.warning("event log: store error, retrying: %s", error)
            # Jittered, so publishers that failed together do not retry together (not a secret: S311).
            await asyncio.sleep(RETRY_PAUSE * (2**tries) * (0.5 + random.random()))  # noqa: S311
    raise AssertionError("unreachable")


async def take_number(partition: int) -> int:
    """The next number of a partition (its counter, created at 1). A timeout after the server applied the
    increment loses that number: a hole that readers pass after waiting (see the module docstring)."""

    async def attempt() -> int:
        doc = await _counters().find_one_and_update(
            {"_id": partition}, {"$inc": {"seq": 1}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        if doc is None:  # an upsert answered with the document after it: never None on either store
            raise PublishFailed("the counter update returned nothing")
        return int(doc["seq"])

    return int(await _retrying(attempt))


async def _insert(docs: list[dict[str, Any]]) -> None:
    """Insert events with their preset `_id`s (one command, however many); a retry of an insert that landed
    meets its own `_id`s: done (`ordered=False` still inserts those of a partial landing)."""

    async def attempt() -> None:
        try:
            await _events().insert_many(docs, ordered=False)
        except BulkWriteError as error:
            # Numbers are never reused, so a duplicate key is one of our own `_id`s (checked on both stores).
            if any(write.get("code") != DUPLICATE_KEY for write in error.details.get("writeErrors", [])):
                raise

    await _retrying(attempt)


async def _number_and_store(
    type_: EventType, parts: dict[int, list[str]], data: dict[str, Any], *, group: str | None, transient: bool
) -> list[dict[str, Any]]:
    numbers = await asyncio.gather(*(take_number(p) for p in parts))
    now = utc_now()
    docs = [
        new_event_doc(p, seq, type_, data, to=to, group=group, transient=transient, now=now)
        for (p, to), seq in zip(parts.items(), numbers, strict=True)
    ]
    await _insert(docs)
    if (recorder := metrics.active) is not None:
        recorder.event_published(type_)  # one event, however many partitions store it
    if config.fanout is not None:
        await config.fanout(docs)
    return docs


async def publish(type_: EventType, recipients: Sequence[str], data: dict[str, Any], *, transient: bool = False) -> int:
    """Store one event for users (once per home partition among them) and return its number in the first
    recipient's partition (the sender's, for a message). PublishFailed if the store keeps failing."""
    if type_ in SIGNAL_TYPES or type_ in GROUP_ONLY_TYPES:
        raise ValueError(f"{type_} events go through signal() or publish_to_group()")
    parts: dict[int, list[str]] = {}
    for user_id in dict.fromkeys(recipients):
        parts.setdefault(home_partition(user_id), []).append(user_id)
    if not parts:
        return 0
    docs = await _number_and_store(type_, parts, data, group=None, transient=transient)
    return int(docs[0]["seq"])


@dataclass(frozen=True)
class GroupEvent:
    """A group event as stored: one document per partition."""

    docs: list[dict[str, Any]]

    def seq_for(self, user_id: str) -> int:
        partition = home_partition(user_id)
        return next(int(doc["seq"]) for doc in self.docs if doc["p"] == partition)

    @property
    def ids(self) -> list[ObjectId]:
        return [doc["_id"] for doc in self.docs]


async def publish_to_group(type_: EventType, group_id: str, data: dict[str, Any]) -> GroupEvent:
    """Store one event naming a group, not its members, in every partition (P numbers taken together, one
    insert): the same cost for 3 members and 10,000. Each process delivers it to the members it holds.
    Its data always names the group (`group_id`): the group's deletion redacts its events by it."""
    if type_ not in GROUP_EVENT_TYPES:
        raise ValueError(f"{type_} is not a group event")
    parts: dict[int, list[str]] = {p: [] for p in range(config.partitions)}
    named = {"group_id": group_id, **data}
    return GroupEvent(await _number_and_store(type_, parts, named, group=group_id, transient=False))


async def signal(type_: EventType, data: dict[str, Any], *, to: Sequence[str] = (), group: str | None = None) -> None:
    """An ephemeral notice (typing, presence) for users or a group's members: never numbered in a user's
    partition, never replayed. Through Redis when there is one (lost if Redis is down: it is ephemeral);
    without Redis, through the store in the signals partition, which only the delivery loops read."""
    if type_ not in SIGNAL_TYPES:
        raise ValueError(f"{type_} is not a signal")
    doc = new_event_doc(
        SIGNALS_PARTITION, 0, type_, data, to=to, group=group, transient=True, now=utc_now(), event_id=ObjectId()
    )
    if (recorder := metrics.active) is not None:
        recorder.event_published(type_)
    if config.signal_sink is not None:
        await config.signal_sink([doc])
        return
    doc["seq"] = await take_number(SIGNALS_PARTITION)
    await _insert([doc])
    if config.fanout is not None:
        await config.fanout([doc])


# Reading


async def counters(collection: Events | None = None) -> dict[int, int]:
    """Every partition's last number taken (the signals partition's too): one command whatever the count."""
    docs = await reads(collection if collection is not None else _counters()).find({}).to_list()
    return {int(doc["_id"]): int(doc["seq"]) for doc in docs}


async def newest_seq(partition: int = 0) -> int:
    """The last number taken in a partition, 0 before the first."""
    doc = await reads(_counters()).find_one({"_id": partition})
    return int(doc["seq"]) if doc else 0


async def read_partition(partition: int, after: int, upto: int | None, limit: int) -> list[dict[str, Any]]:
    """The events of a partition numbered after `after` (up to `upto`), in order: what delivery dispatches.

    `$eq` spelled out: nx-27017 then walks the (p, seq) index (docs/store.md)."""
    bounds: dict[str, int] = {"$gt": after}
    if upto is not None:
        bounds["$lte"] = upto
    cursor = reads(_events()).find({"p": {"$eq": partition}, "seq": bounds}, FEED_PROJECTION).sort("seq", ASCENDING)
    return await cursor.limit(limit).batch_size(limit).to_list()


async def oldest_seq(partition: int) -> int | None:
    """The lowest number still stored in a partition (older ones expired), None when it is empty."""
    doc = await reads(_events()).find_one({"p": {"$eq": partition}}, {"seq": 1}, sort=[("seq", ASCENDING)])
    return int(doc["seq"]) if doc else None


async def resumable(partition: int, after: int) -> tuple[bool, int]:
    """Whether every stored event of the partition after `after` is still kept, and its newest number.

    A number above the newest is one this log never gave out (another deployment's, a log that was wiped,
    or a token of the global sequence before partitions): the client must resync.
    """
    newest, oldest = await asyncio.gather(newest_seq(partition), oldest_seq(partition))
    if after > newest:
        return False, newest
    return (oldest is None or oldest <= after + 1), newest


def stored_filter(partition: int, after: int, upto: int) -> dict[str, Any]:
    """Served by the (p, seq) index on both stores (`$eq` spelled out for nx-27017, docs/store.md)."""
    return {"p": {"$eq": partition}, "seq": {"$gt": after, "$lte": upto}, "transient": {"$ne": True}}


async def stored_after(partition: int, after: int, upto: int, limit: int) -> list[dict[str, Any]]:
    """The stored (not transient) events of a partition after `after` up to `upto`, oldest first: a user's
    backlog is among them (realtime.stream picks it; one query, no `$or` beside other conditions,
    which nx-27017 mis-joins: docs/store.md)."""
    cursor = reads(_events()).find(stored_filter(partition, after, upto), DELIVERY_PROJECTION).sort("seq", ASCENDING)
    return await cursor.limit(limit).batch_size(limit).to_list()


async def membership_changes(user_id: str, partition: int, after: int, upto: int) -> list[dict[str, Any]]:
    """The user's `group_joined` / `group_left` events after `after` up to `upto`, oldest first: from them
    and the memberships of now, a resume knows which groups the user was in at every event."""
    query = {
        "p": {"$eq": partition},
        "seq": {"$gt": after, "$lte": upto},
        "to": user_id,
        "type": {"$in": ["group_joined", "group_left"]},
    }
    cursor = reads(_events()).find(query, {"seq": 1, "type": 1, "data": 1}).sort("seq", ASCENDING)
    return await cursor.to_list()


async def prune(now: datetime | None = None) -> int:
    """Delete the events older than the retention period (signals sooner); returns how many.

    Any process may run it; deleting what another already deleted is harmless. Served by `created_at_1`.
    """
    now = now or utc_now()
    collection = _events()
    old = await collection.delete_many({"created_at": {"$lt": now - timedelta(seconds=RETENTION_SECONDS)}})
    signals = await collection.delete_many(
        {"p": {"$eq": SIGNALS_PARTITION}, "created_at": {"$lt": now - timedelta(seconds=SIGNAL_RETENTION_SECONDS)}}
    )
    return old.deleted_count + signals.deleted_count


async def redact_group_events(group_id: str) -> int:
    """Empty every event of a deleted group but its `group_deleted` notice: no addressee (so no delivery, no
    replay) and no data. Redacted rather than deleted, so the partitions keep their numbers without holes
    (readers would wait at each). Served by `data.group_id_1`."""
    query = {"data.group_id": {"$eq": group_id}, "type": {"$ne": "group_deleted"}}
    result = await _events().update_many(query, {"$set": REDACTED})
    return result.modified_count


async def redact_events(event_ids: Sequence[ObjectId]) -> None:
    """Empty the copies of one group event: a group message published while its group was being deleted."""
    await _events().update_many({"_id": {"$in": list(event_ids)}}, {"$set": REDACTED})


# A stored event is shared by its recipients (a group event by every member), so what differs between them is
# kept in private keys of its data, which `frame` resolves for each viewer and never sends.
PAIR = "_pair"  # in a `conversation`: the two participants of a direct conversation
REACTORS = "_reactors"  # in a `message`: {emoji: [user ids]}, for each reaction's `me`


def direct_conversation(a: str, b: str) -> dict[str, Any]:
    """A direct conversation as an event stores it: each participant's frame names the other one (`frame`), as
    their `GET /api/conversations` does."""
    return {"type": "user", PAIR: [a, b]}


def viewer_key(doc: dict[str, Any], viewer: str) -> tuple[Any, ...]:
    """What of an event's frame depends on who receives it; () when nothing does. Recipients with the same key
    receive the same frame, so a group message to 10,000 members is encoded once or twice, not 10,000 times."""
    data = doc["data"]
    key: tuple[Any, ...] = ()
    message = data.get("message")
    if isinstance(message, dict):
        if doc["type"] == "group_message":
            key += (_mentioned(message, viewer),)
        reactors = message.get(REACTORS)
        if reactors:
            key += (tuple(emoji for emoji, users in reactors.items() if viewer in users),)
    conversation = data.get("conversation")
    if isinstance(conversation, dict) and PAIR in conversation:
        key += (_other(conversation[PAIR], viewer),)
    return key


def frame(doc: dict[str, Any], viewer: str) -> dict[str, Any]:
    """What `viewer` receives for a stored event: its type and seq, then its data as that recipient sees it
    (whether a group message mentions them, which reactions are theirs, who the other one of a direct
    conversation is), without the private keys."""
    message: dict[str, Any] = {"type": doc["type"], "seq": doc["seq"]}
    message.update((key, value) for key, value in doc["data"].items() if key not in message)
    shown = message.get("message")
    if isinstance(shown, dict):
        message["message"] = shown = {key: value for key, value in shown.items() if key != REACTORS}
        if doc["type"] == "group_message" and _mentioned(shown, viewer):
            message["mentioned"] = True
        reactors = doc["data"]["message"].get(REACTORS)
        if reactors and "reactions" in shown:
            shown["reactions"] = [
                {**reaction, "me": viewer in reactors.get(reaction["emoji"], ())} for reaction in shown["reactions"]
            ]
    conversation = message.get("conversation")
    if isinstance(conversation, dict) and PAIR in conversation:
        message["conversation"] = {"type": conversation["type"], "id": _other(conversation[PAIR], viewer)}
    return message


def _mentioned(message: dict[str, Any], viewer: str) -> bool:
    """Whether a group message calls `viewer`: named, or everyone; never its own sender (as the list says)."""
    mentions = message.get("mentions") or ()
    return viewer != message.get("from_id") and ("all" in mentions or viewer in mentions)


def _other(pair: Sequence[str], viewer: str) -> str:
    return pair[1] if pair[0] == viewer else pair[0]


def signal_frame(doc: dict[str, Any]) -> dict[str, Any]:
    """A signal's frame: no seq (it is not in the client's sequence)."""
    message: dict[str, Any] = {"type": doc["type"]}
    message.update((key, value) for key, value in doc["data"].items() if key not in message)
    return message


def encode(message: Any) -> str:
    """Compact JSON; datetimes (stored ones come back as datetime objects) in ISO 8601."""
    return json.dumps(message, default=_json_default, separators=(",", ":"), ensure_ascii=False)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
