"""One hub per process: the ordered feed of the event log (Redis or the store), the local sockets, and upkeep.

Each partition's events are dispatched in number order. They come from Redis when there is one (the
store is read only to fill a hole), else from the store, which the hub reads only when a partition's
counter moved (one `find` of the counters per look; fast while events flow, slow when idle). A number
that stays missing is waited for up to EVENT_GAP_WAIT, then passed (docs/reliability.md#the-event-log).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

from pymongo.errors import PyMongoError
from redis.exceptions import RedisError
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from chat_api.config import Settings
from chat_api.events import service as events
from chat_api.events.models import SIGNALS_PARTITION, partition_of
from chat_api.events.service import encode, frame, prune, signal_frame, viewer_key
from chat_api.groups import repository as groups
from chat_api.groups.service import sweep_deleted_groups
from chat_api.metrics import registry as metrics
from chat_api.realtime import presence
from chat_api.realtime.broker import Broker
from chat_api.realtime.wakeup import Wakeups
from chat_api.store.client import BACKGROUND
from chat_api.users.token_versions import token_versions

log = logging.getLogger("chat_api.realtime")
T = TypeVar("T")

READ_BATCH = 500
RETRY_AFTER_ERROR = 0.5  # the store is down or slow: look again soon, without hammering it
PRUNE_INTERVAL = 600.0  # events are kept 7 days: deleting the expired ones every 10 minutes is plenty
GROUP_SWEEP_INTERVAL = 60.0  # finishing a group deletion a crash cut short: one indexed query when there is none
# Without Redis: how often the counters are looked at while events flow, and at most when idle. The
# look is one command; the idle pace keeps a process under one command a second for everything.
ACTIVE_WINDOW = 3.0  # after an event, keep looking fast this long: the conversation goes on
IDLE_POLL = 2.0
# With Redis: the counters are compared with the heads this often, so an event whose pub/sub message was
# lost with nothing after it in its partition is still read (late, never lost).
SAFETY_CHECK = 10.0
REDIS_RETRY = 2.0  # Redis down: poll the store, and try Redis again this often
GAP_FIRST_LOOK = 0.05  # a hole is first looked for in the store this soon (its publisher is usually mid-insert)
GAP_LOOK = 0.25
# A deleted group's later events are dropped for this long after its `group_deleted` (or while its
# tombstone lasts): far beyond the last moment a request under way could publish one.
DELETED_GROUP_MEMORY = 3600.0
CLOSE_TIMEOUT = 2.0
RECENT_IDS = 4096
BACKLOG_SEND_TIMEOUT = 10.0  # a client that reads nothing of its backlog for this long is dropped
# Close codes (4000-4999 are the application's own).
UNAUTHORIZED = 4401
TOO_SLOW = 4408
GOING_AWAY = 1001


def text_frame(text: str) -> bytes:
    """A whole server-to-client WebSocket text frame (unmasked; Sanic negotiates no compression).

    Built once per event and written as it is to every recipient's connection, so a group
    message costs one encoding, not one per member.
    """
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])


class Connection:
    """One authenticated socket. Frames are written to its transport without waiting: nothing but
    the kernel and the transport's buffer holds them. When that buffer passes `buffer_limit`
    bytes the client is not reading, and it is dropped (it can resume with its last seq)."""

    def __init__(self, ws: WebsocketImplProtocol, user_id: str, token_version: int, record_id: str, buffer_limit: int):
        self.ws = ws
        self.user_id = user_id
        self.token_version = token_version
        self.record_id = record_id
        self.buffer_limit = buffer_limit
        # Live events that arrive while the backlog is being sent; None once live.
        self.pending: list[tuple[int, bytes]] | None = []
        self.pending_bytes = 0
        self.last_seq = 0  # the newest seq sent, or known to be covered
        self.closing = False

    def deliver(self, seq: int, frame: bytes) -> None:
        """Called by the delivery loop: never waits."""
        if self.pending is not None:
            self.pending.append((seq, frame))
            self.pending_bytes += len(frame)
            if self.pending_bytes > self.buffer_limit:
                self.drop()
            return
        if seq > self.last_seq:
            self.last_seq = seq
            self.write(frame)

    def signal(self, frame: bytes) -> None:
        """An ephemeral notice: written when live, skipped while the backlog is being sent (never replayed)."""
        if self.pending is None:
            self.write(frame)

    def push(self, text: str) -> None:
        self.write(text_frame(text))

    def write(self, frame: bytes) -> None:
        transport = self.ws.io_proto.transport if self.ws.io_proto else None
        if self.closing or transport is None or transport.is_closing() or self.ws.ws_proto.state is not State.OPEN:
            return
        # Whole frames, each in one write: the loop is single-threaded, so Sanic's own writes
        # (pings, the close frame) never land in the middle of one.
        transport.write(frame)
        if transport.get_write_buffer_size() > self.buffer_limit:
            self.drop()

    async def push_waiting(self, text: str) -> None:
        """For the backlog, sent by the socket's own handler: waits while the client reads, up to
        BACKLOG_SEND_TIMEOUT for each frame."""
        if self.closing:
            return
        try:
            await asyncio.wait_for(self.ws.send(text), BACKLOG_SEND_TIMEOUT)
        except TimeoutError:
            self.drop()

    def go_live(self, covered: int) -> None:
        """Everything up to `covered` was sent (or is not wanted): flush what came meanwhile, then go live."""
        pending, self.pending = self.pending or [], None
        self.last_seq = max(self.last_seq, covered)
        for seq, data in pending:
            self.deliver(seq, data)

    def drop(self) -> None:
        if self.closing:
            return
        log.info("socket of user %s dropped: its client does not read", self.user_id)
        self.closing = True
        # Not close(): its handshake would wait behind the data the client is not reading.
        self.ws.fail_connection(TOO_SLOW, "send buffer full: reconnect with last_seq")

    def close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        _spawn(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.ws.close(code, reason), CLOSE_TIMEOUT)
        except Exception:
            self.ws.fail_connection(code, reason)


_background: set[asyncio.Task[None]] = set()


def _spawn(coroutine: Coroutine[Any, Any, None]) -> None:
    # asyncio keeps only weak references to tasks: hold them until they finish.
    task = asyncio.create_task(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)


class Hub:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.partitions = settings.partitions
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.sockets: dict[str, set[Connection]] = {}
        # The groups of the users this process holds sockets for, and the reverse: who receives a group event.
        self.groups_of: dict[str, set[str]] = {}
        self.members_here: dict[str, set[str]] = {}
        # Per partition (and the signals partition without Redis): the last number dispatched or passed,
        # the events that came early (above a hole), and since when the current hole is known.
        self.heads: dict[int, int] = {}
        self.early: dict[int, dict[int, dict[str, Any]]] = {}
        self.hole_since: dict[int, float] = {}
        self.holes_passed = 0
        self.active_until = 0.0
        self.behind = False  # the last look found numbers beyond what it could read
        # The ids of the last events dispatched, by (partition, seq): tells our own event read from the store first
        # from another event under the same number (a log that started again).
        self.recent: OrderedDict[tuple[int, int], str] = OrderedDict()
        self.gap_found = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = False
        self.broker: Broker | None = None
        self.redis_up = False
        # Without Redis: this instance's processes wake each other when they publish (realtime.wakeup).
        self.wakeups: Wakeups | None = None
        self.woken = asyncio.Event()
        self.previous_config: tuple[int, events.Sink | None, events.Sink | None] = (1, None, None)
        # Deleted groups (id -> when learnt, monotonic): no event of theirs is delivered any more.
        self.deleted_groups: dict[str, float] = {}

    async def start(self) -> None:
        """Start after the store's client (the process's one client, shared with requests, bound by Beanie)."""
        BACKGROUND.set(True)  # the tasks created here inherit it: their commands are nobody's request
        # Restored at stop: a second app in the same process (the tests run one) must not keep ours.
        self.previous_config = (events.config.partitions, events.config.fanout, events.config.signal_sink)
        if self.settings.redis_url:
            self.broker = Broker(self.settings.redis_url)
        else:
            wakeups = Wakeups(self.settings.data_dir / "wakeup", self.woken.set)
            self.wakeups = wakeups if await wakeups.start() else None
        self.configure_events()
        newest = await events.counters()
        # Everything numbered before the start is history: resume reads it.
        self.heads = {p: newest.get(p, 0) for p in self.tracked_partitions()}
        # The groups deleted before the start: their `group_deleted` events are behind the heads.
        self.remember_deleted_groups([str(doc["_id"]) for doc in await groups.tombstones()])
        feed = self._redis_feed if self.broker is not None else self._store_feed
        self.tasks = [
            asyncio.create_task(feed(), name="event-feed"),
            asyncio.create_task(self._holes(), name="hole-filler"),
            asyncio.create_task(self._forever(self._heartbeat, presence.HEARTBEAT_INTERVAL), name="presence-heartbeat"),
            asyncio.create_task(self._forever(self._reap, presence.REAP_INTERVAL), name="presence-reaper"),
            asyncio.create_task(self._forever(self._prune, PRUNE_INTERVAL), name="event-pruner"),
            asyncio.create_task(self._forever(self._sweep_groups, GROUP_SWEEP_INTERVAL), name="group-sweeper"),
        ]
        BACKGROUND.set(False)
        log.info(
            "real time: %s partition(s), fan-out through %s", self.partitions, "Redis" if self.broker else "the store"
        )

    def configure_events(self) -> None:
        """Make this hub the events service's fan-out: its own sockets at once, and Redis when there is one."""
        events.configure(
            self.partitions,
            fanout=self.published,
            signal_sink=self.broker.publish if self.broker is not None else None,
        )

    def tracked_partitions(self) -> list[int]:
        # Without Redis, signals travel through the store in a partition of their own.
        return list(range(self.partitions)) + ([] if self.broker is not None else [SIGNALS_PARTITION])

    async def stop(self) -> None:
        """Before the server stops: clients reconnect (to another process) and resume."""
        for connections in list(self.sockets.values()):
            for connection in list(connections):
                connection.close(GOING_AWAY, "server restarting: reconnect with last_seq")
        # A cancellation that lands inside a store operation may come back as a PyMongoError (the
        # driver closes the connection): the flag ends the loops, and the wait is bounded anyway.
        self.stopping = True
        presence.stop_settling()
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=CLOSE_TIMEOUT)
        self.tasks = []
        events.configure(*self.previous_config)
        if self.wakeups is not None:
            self.wakeups.close()
        if self.broker is not None:
            await self.broker.close()

    # Sockets and the groups of their users

    def register(self, connection: Connection) -> bool:
        """Add a socket; True when it is its user's first here (the caller then loads the user's groups)."""
        first = connection.user_id not in self.sockets
        self.sockets.setdefault(connection.user_id, set()).add(connection)
        return first

    def track_groups(self, user_id: str, group_ids: Iterable[str]) -> None:
        """The groups of a user whose first socket here opened; from now on membership events keep them."""
        if user_id not in self.sockets:
            return
        known = self.groups_of.setdefault(user_id, set())
        for group_id in group_ids:
            known.add(group_id)
            self.members_here.setdefault(group_id, set()).add(user_id)

    def unregister(self, connection: Connection) -> None:
        connections = self.sockets.get(connection.user_id)
        if connections is None:
            return
        connections.discard(connection)
        if not connections:
            del self.sockets[connection.user_id]
            for group_id in self.groups_of.pop(connection.user_id, set()):
                self._leave(group_id, connection.user_id)

    def _leave(self, group_id: str, user_id: str) -> None:
        members = self.members_here.get(group_id)
        if members is not None:
            members.discard(user_id)
            if not members:
                del self.members_here[group_id]

    def settled(self, partition: int) -> int:
        """The number up to which this process has dispatched the partition: no hole below it can still fill."""
        return self.heads.get(partition, 0)

    def home(self, user_id: str) -> int:
        return partition_of(user_id, self.partitions)

    # The feed: events in, in number order per partition

    async def published(self, docs: list[dict[str, Any]]) -> None:
        """A request of this process stored these events: dispatch them here, and fan out through Redis.

        Dispatched on the loop's next turn, not inline: the request answers without waiting for frames to be
        written to every local member's socket (a 1,000-member group), and the frames follow at once.
        """
        if self.wakeups is None:
            self.active_until = time.monotonic() + ACTIVE_WINDOW
        asyncio.get_running_loop().call_soon(self._offer_own, docs)
        if self.broker is not None:
            await self.broker.publish(docs)
        elif self.wakeups is not None:
            self.wakeups.notify()

    def _offer_own(self, docs: list[dict[str, Any]]) -> None:
        for doc in docs:
            head = self.heads.get(doc["p"])
            seen = self.recent.get((doc["p"], doc["seq"]))
            if head is not None and doc["seq"] <= head and seen != str(doc["_id"]):
                # Dispatched already, but not this event (a look at the store may have read ours first): the
                # log started again below its number (it was emptied), so follow it from there.
                log.warning("partition %s started again below %s", doc["p"], head)
                self.reset(doc["p"], doc["seq"] - 1)
            self.offer(doc)

    def reset_all(self) -> None:
        """Follow every partition from its start, as this process's one hub (the tests empty the log between
        them, and run other apps in the same process, whose hubs configure the events service too)."""
        for partition in self.tracked_partitions():
            self.reset(partition)
        self.configure_events()

    def reset(self, partition: int, head: int = 0) -> None:
        self.heads[partition] = head
        self.early.pop(partition, None)
        self.hole_since.pop(partition, None)

    def offer(self, doc: dict[str, Any]) -> None:
        """An event from any source, once or several times: dispatched once, in its partition's order."""
        partition, seq = doc["p"], doc["seq"]
        if partition == SIGNALS_PARTITION and self.broker is not None:
            self.dispatch(doc)  # a signal through Redis: no number, no order to keep
            return
        head = self.heads.get(partition)
        if head is None or seq <= head:
            return  # a partition this process does not follow (the count changed), or already dispatched
        self.early.setdefault(partition, {})[seq] = doc
        self._advance(partition)

    def _advance(self, partition: int) -> None:
        early = self.early.get(partition, {})
        head = self.heads[partition]
        while head + 1 in early:
            head += 1
            self.heads[partition] = head
            doc = early.pop(head)
            self.recent[(partition, head)] = str(doc.get("_id"))
            if len(self.recent) > RECENT_IDS:
                self.recent.popitem(last=False)
            try:
                self.dispatch(doc)
            except Exception:
                log.exception("could not dispatch event %s/%s", partition, head)
        if early:
            self.hole_since.setdefault(partition, time.monotonic())
            self.gap_found.set()
        else:
            self.early.pop(partition, None)
            self.hole_since.pop(partition, None)

    async def catch_up(self) -> bool:
        """Read what the counters say is numbered beyond the heads; True if anything came. One command when
        nothing moved."""
        newest = await events.counters()
        moved = False
        self.behind = False
        for partition in self.tracked_partitions():
            last = newest.get(partition, 0)
            head = self.heads.get(partition, 0)
            if last < head:
                log.warning("partition %s started again below %s: reading it from its start", partition, head)
                self.reset(partition)
                head = 0
            if last > head:
                docs = await events.read_partition(partition, head, last, READ_BATCH)
                for doc in docs:
                    self.offer(doc)
                # Numbered but not stored yet (its publisher is mid-insert), or a batch's worth more: look again soon.
                self.behind = self.behind or last > self.heads.get(partition, 0)
                moved = moved or bool(docs) or self.behind
        return moved

    async def _store_feed(self) -> None:
        """Without Redis: look at the counters when a sibling process wakes this one (realtime.wakeup) and every
        IDLE_POLL; without wake-ups, fast for ACTIVE_WINDOW after an event, backing off to IDLE_POLL."""
        interval = self.settings.event_poll_interval
        while not self.stopping:
            if await self._guarded("event feed", self.catch_up) and self.wakeups is None:
                self.active_until = time.monotonic() + ACTIVE_WINDOW
            fast = time.monotonic() < self.active_until or bool(self.early) or self.behind
            if fast:
                interval = self.settings.event_poll_interval
            else:
                # With wake-ups, an event costs one look per process: the next one comes with the next wake-up.
                interval = IDLE_POLL if self.wakeups is not None else min(IDLE_POLL, interval * 2)
            # A sibling process that published wakes this one at once (realtime.wakeup).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.woken.wait(), interval)
            self.woken.clear()

    async def _redis_feed(self) -> None:
        """With Redis: its messages, in order per partition; the store for what it missed, and while it is down."""
        assert self.broker is not None
        while not self.stopping:
            client = None
            try:
                client, pubsub = await self.broker.subscribe()
                # Subscribed first, then read the store: nothing falls between the two.
                await self.catch_up()
                if not self.redis_up:
                    log.info("real time: receiving events through Redis")
                self.redis_up = True
                checked = time.monotonic()
                while not self.stopping:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=SAFETY_CHECK)
                    if message is not None and message.get("type") == "message":
                        for doc in json.loads(message["data"]):
                            self.offer(doc)
                    if time.monotonic() - checked >= SAFETY_CHECK:
                        checked = time.monotonic()
                        await self.catch_up()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as error:
                if self.redis_up:
                    log.warning("real time: Redis unreachable, reading the store until it is back: %s", error)
                self.redis_up = False
                await self._poll_for(REDIS_RETRY)
            except PyMongoError as error:
                log.warning("event feed: store error, retrying: %s", error)
                await asyncio.sleep(RETRY_AFTER_ERROR)
            except Exception:
                log.exception("event feed failed, going on")
                await asyncio.sleep(RETRY_AFTER_ERROR)
            finally:
                if client is not None:
                    with contextlib.suppress(RedisError, OSError):
                        await client.aclose()

    async def _poll_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            await self._guarded("event feed", self.catch_up)
            await asyncio.sleep(self.settings.event_poll_interval)

    async def _holes(self) -> None:
        """Fill holes from the store; pass one that stays empty for EVENT_GAP_WAIT (its publisher died)."""
        while not self.stopping:
            await self.gap_found.wait()
            await asyncio.sleep(GAP_FIRST_LOOK)
            while self.early and not self.stopping:
                await self._guarded("hole filler", self._fill_all)
                if self.early:
                    await asyncio.sleep(GAP_LOOK)
            self.gap_found.clear()

    async def _fill_all(self) -> None:
        for partition in list(self.early):
            await self._fill(partition)

    async def _fill(self, partition: int) -> None:
        early = self.early.get(partition)
        if not early:
            return
        head, first_early = self.heads[partition], min(early)
        for doc in await events.read_partition(partition, head, first_early - 1, READ_BATCH):
            self.offer(doc)
        if partition not in self.early or self.heads[partition] >= first_early - 1:
            return
        since = self.hole_since.get(partition, time.monotonic())
        if time.monotonic() - since >= self.settings.event_gap_wait:
            passed = self.heads[partition] + 1
            wait = self.settings.event_gap_wait
            log.warning("partition %s: number %s stayed empty for %.1f s: passing it", partition, passed, wait)
            self.holes_passed += 1
            self.heads[partition] = passed
            self.hole_since[partition] = time.monotonic()
            self._advance(partition)

    # Dispatch

    def remember_deleted_groups(self, group_ids: list[str]) -> None:
        """Learn of deleted groups; forget those deleted long ago whose tombstone is gone."""
        now = time.monotonic()
        for group_id in group_ids:
            self.deleted_groups.setdefault(group_id, now)
        known = set(group_ids)
        self.deleted_groups = {
            group_id: learnt
            for group_id, learnt in self.deleted_groups.items()
            if group_id in known or now - learnt < DELETED_GROUP_MEMORY
        }

    def hides(self, doc: dict[str, Any]) -> bool:
        """An event (or frame) of a deleted group other than its `group_deleted`: never delivered.

        Events come in order, so every event of a group after its `group_deleted` is dropped: one
        published by a send that raced the deletion, which that send then redacts
        (docs/reliability.md#deleting-a-group).
        """
        data = doc.get("data", doc)
        group_id = data.get("group_id") if isinstance(data, dict) else None
        return group_id is not None and doc["type"] != "group_deleted" and group_id in self.deleted_groups

    def dispatch(self, doc: dict[str, Any]) -> None:
        kind: str = doc["type"]
        if doc["p"] == SIGNALS_PARTITION:
            self._signal(doc)
            return
        if kind == "group_deleted":
            self.deleted_groups.setdefault(doc["data"]["group_id"], time.monotonic())
        elif self.hides(doc):
            return
        if kind == "logout":
            version = int(doc["data"].get("token_version", 0))
            for user_id in doc["to"]:
                # This process's requests read the account's token version again (docs/reliability.md).
                token_versions.forget(user_id)
                for connection in list(self.sockets.get(user_id, ())):
                    if connection.token_version < version:
                        connection.close(UNAUTHORIZED, "logged out")
            return
        group_id = doc.get("group")
        if group_id is not None:
            # A group event: one copy per partition, each for the members whose home it is.
            partition = doc["p"]
            receivers = [u for u in self.members_here.get(group_id, ()) if self.home(u) == partition]
            if kind == "group_deleted":
                for user_id in list(self.members_here.get(group_id, ())):
                    if self.home(user_id) == partition:
                        self.groups_of.get(user_id, set()).discard(group_id)
                        self._leave(group_id, user_id)
        else:
            receivers = [u for u in doc["to"] if u in self.sockets]
            membership = doc["data"].get("group_id")
            if kind == "group_joined":
                self.track_groups_of(receivers, membership)
            elif kind == "group_left":
                for user_id in receivers:
                    self.groups_of.get(user_id, set()).discard(membership)
                    self._leave(membership, user_id)
        self._deliver(doc, receivers)

    def track_groups_of(self, user_ids: list[str], group_id: str) -> None:
        for user_id in user_ids:
            self.track_groups(user_id, [group_id])

    def _deliver(self, doc: dict[str, Any], receivers: Iterable[str]) -> None:
        seq = doc["seq"]
        # Encoded once per distinct rendering (events.service.viewer_key), only when someone here receives it.
        encoded: dict[tuple[Any, ...], bytes] = {}
        frames = 0
        for user_id in receivers:
            connections = self.sockets.get(user_id)
            if not connections:
                continue
            key = viewer_key(doc, user_id)
            shown = encoded.get(key)
            if shown is None:
                shown = encoded[key] = text_frame(encode(frame(doc, user_id)))
            for connection in list(connections):
                connection.deliver(seq, shown)
            frames += len(connections)
        if frames and (recorder := metrics.active) is not None:
            recorder.event_delivered(doc["type"], frames, doc.get("created_at"))

    def _signal(self, doc: dict[str, Any]) -> None:
        group_id = doc.get("group")
        if group_id is not None:
            sender = doc["data"].get("from_id")
            receivers: Iterable[str] = [u for u in self.members_here.get(group_id, ()) if u != sender]
        else:
            receivers = [u for u in doc["to"] if u in self.sockets]
        encoded: bytes | None = None
        frames = 0
        for user_id in receivers:
            for connection in list(self.sockets.get(user_id, ())):
                if encoded is None:
                    encoded = text_frame(encode(signal_frame(doc)))
                connection.signal(encoded)
                frames += 1
        if frames and (recorder := metrics.active) is not None:
            recorder.event_delivered(doc["type"], frames, doc.get("created_at"))

    # Upkeep

    async def _forever(self, step: Callable[[], Coroutine[Any, Any, None]], interval: float) -> None:
        name = asyncio.current_task().get_name()  # type: ignore[union-attr]
        while not self.stopping:
            await self._guarded(name, step)
            await asyncio.sleep(interval)

    async def _guarded(self, what: str, step: Callable[[], Coroutine[Any, Any, T]]) -> T | None:
        """One step of a background loop: a store error or a bug is logged and waited out (RETRY_AFTER_ERROR),
        never the end of the loop; None then."""
        try:
            return await step()
        except asyncio.CancelledError:
            raise
        except PyMongoError as error:
            log.warning("%s: store error, retrying: %s", what, error)
        except Exception:
            log.exception("%s failed, going on", what)
        await asyncio.sleep(RETRY_AFTER_ERROR)
        return None

    async def _heartbeat(self) -> None:
        await presence.heartbeat(self.worker)

    async def _reap(self) -> None:
        await presence.reap(self.worker)

    async def _sweep_groups(self) -> None:
        self.remember_deleted_groups(await sweep_deleted_groups())

    async def _prune(self) -> None:
        deleted = await prune()
        if deleted:
            log.info("deleted %s events older than the retention period", deleted)
