"""One hub per worker: the delivery loop tailing the event log, the local sockets, and presence upkeep."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Coroutine
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from chat_api.config import Settings
from chat_api.events.models import Event
from chat_api.events.service import encode, event_id_at, frame, newest_event, oldest_seq, prune, tail
from chat_api.groups import repository as groups
from chat_api.groups.service import sweep_deleted_groups
from chat_api.realtime import presence
from chat_api.realtime.models import PresenceRecord
from chat_api.store.client import client_options

log = logging.getLogger("chat_api.realtime")

TAIL_BATCH = 500
RETRY_AFTER_ERROR = 0.5  # the store is down or slow: look again soon, without hammering it
REAP_INTERVAL = 0.5
PRUNE_INTERVAL = 600.0  # events are kept 7 days: deleting the expired ones every 10 minutes is plenty
GROUP_SWEEP_INTERVAL = 60.0  # finishing a group deletion a crash cut short: one indexed query when there is none
# A deleted group's later events are dropped for this long after its `group_deleted` (or while its
# tombstone lasts): far beyond the last moment a request under way could publish one.
DELETED_GROUP_MEMORY = 3600.0
RESET_CHECK_INTERVAL = 0.25  # how often the tail checks that the log did not start again
CLOSE_TIMEOUT = 2.0
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
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.sockets: dict[str, set[Connection]] = {}
        self.last_seq = 0
        self.last_id: object = None  # the `_id` of the event at last_seq, to notice a log that restarted
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = False
        self.client: AsyncMongoClient[dict[str, Any]] | None = None
        self.database: AsyncDatabase[dict[str, Any]]
        # Deleted groups (id -> when learnt, monotonic): no event of theirs is delivered any more.
        self.deleted_groups: dict[str, float] = {}
        self.events: AsyncCollection[dict[str, Any]]
        self.records: AsyncCollection[dict[str, Any]]

    async def start(self, uri: str) -> None:
        # A client of its own: the loops' commands are no request's (command monitoring, the
        # round-trip counts), and a handler cancelled mid-operation cannot close their connection.
        options = client_options(self.settings.store_timeout)
        options.pop("event_listeners", None)
        self.client = AsyncMongoClient(uri, **options)
        database = self.database = self.client[self.settings.mongodb_db]
        self.events = database[Event.Settings.name]
        self.records = database[PresenceRecord.Settings.name]
        newest = await newest_event(self.events)
        if newest is not None:
            self.last_seq, self.last_id = newest["seq"], newest["_id"]
        # The groups deleted before the tail's start: their `group_deleted` events are behind it.
        self.remember_deleted_groups([str(doc["_id"]) for doc in await groups.tombstones(database)])
        self.tasks = [
            asyncio.create_task(self._forever(self._tail, 0), name="delivery-loop"),
            asyncio.create_task(self._forever(self._refresh, presence.RECORD_REFRESH), name="presence-refresh"),
            asyncio.create_task(self._forever(self._reap, REAP_INTERVAL), name="presence-reaper"),
            asyncio.create_task(self._forever(self._prune, PRUNE_INTERVAL), name="event-pruner"),
            asyncio.create_task(self._forever(self._sweep_groups, GROUP_SWEEP_INTERVAL), name="group-sweeper"),
        ]
        log.info("delivery loop started after seq %s", self.last_seq)

    async def stop(self) -> None:
        """Before the server stops: clients reconnect (to another worker) and resume."""
        for connections in list(self.sockets.values()):
            for connection in list(connections):
                connection.close(GOING_AWAY, "server restarting: reconnect with last_seq")
        # A cancellation that lands inside a store operation may come back as a PyMongoError (the
        # driver closes the connection): the flag ends the loops, and the wait is bounded anyway.
        self.stopping = True
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=CLOSE_TIMEOUT)
        self.tasks = []
        if self.client is not None:
            await self.client.close()

    def register(self, connection: Connection) -> None:
        self.sockets.setdefault(connection.user_id, set()).add(connection)

    def unregister(self, connection: Connection) -> None:
        connections = self.sockets.get(connection.user_id)
        if connections is not None:
            connections.discard(connection)
            if not connections:
                del self.sockets[connection.user_id]

    def record_ids(self) -> list[str]:
        return [c.record_id for connections in self.sockets.values() for c in connections if not c.closing]

    async def _forever(self, step: Any, interval: float) -> None:
        while not self.stopping:
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except PyMongoError as error:
                log.warning("%s: store error, retrying: %s", asyncio.current_task().get_name(), error)  # type: ignore[union-attr]
                await asyncio.sleep(RETRY_AFTER_ERROR)
            except Exception:
                log.exception("%s failed, restarting it", asyncio.current_task().get_name())  # type: ignore[union-attr]
                await asyncio.sleep(RETRY_AFTER_ERROR)
            if interval:
                await asyncio.sleep(interval)

    async def _tail(self) -> None:
        """Every event after the last one seen, in seq order (`seq_1`); a short sleep when there is none."""
        checked = time.monotonic()
        while not self.stopping:
            docs = await tail(self.events, self.last_seq, TAIL_BATCH)
            for doc in docs:
                self.last_seq, self.last_id = doc["seq"], doc["_id"]
                try:
                    self.dispatch(doc)
                except Exception:
                    log.exception("could not dispatch event %s", doc.get("seq"))
            if len(docs) < TAIL_BATCH:
                await asyncio.sleep(self.settings.event_poll_interval)
            if time.monotonic() - checked > RESET_CHECK_INTERVAL:
                checked = time.monotonic()
                await self._check_reset()

    async def _check_reset(self) -> None:
        """The event we saw last is gone or replaced: the log was emptied (every event expired, or
        a wipe) and its numbers started again at 1, so the tail starts again from its beginning."""
        if not self.last_seq:
            return
        event_id = await event_id_at(self.events, self.last_seq)
        if event_id is not None and event_id == self.last_id:
            return
        oldest = None if event_id is not None else await oldest_seq(self.events)
        if event_id is None and (oldest is None or oldest > self.last_seq):
            return  # it expired (the oldest go first), and what follows it is read by the tail
        log.warning("the event log started again below seq %s: tailing it from its start", self.last_seq)
        self.last_seq, self.last_id = 0, None

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

        Events come in seq order, so every event of a group after its `group_deleted` is dropped:
        one published by a send that raced the deletion, which that send then redacts
        (docs/reliability.md#deleting-a-group).
        """
        data = doc.get("data", doc)
        group_id = data.get("group_id") if isinstance(data, dict) else None
        return group_id is not None and doc["type"] != "group_deleted" and group_id in self.deleted_groups

    def dispatch(self, doc: dict[str, Any]) -> None:
        seq: int = doc["seq"]
        if doc["type"] == "group_deleted":
            self.deleted_groups.setdefault(doc["data"]["group_id"], time.monotonic())
        elif self.hides(doc):
            return
        if doc["type"] == "logout":
            version = int(doc["data"].get("token_version", 0))
            for user_id in doc["recipients"]:
                for connection in list(self.sockets.get(user_id, ())):
                    if connection.token_version < version:
                        connection.close(UNAUTHORIZED, "logged out")
            return
        encoded: bytes | None = None
        for user_id in doc["recipients"]:
            connections = self.sockets.get(user_id)
            if not connections:
                continue
            if encoded is None:  # encoded once, only when someone here receives it
                encoded = text_frame(encode(frame(doc)))
            for connection in list(connections):
                connection.deliver(seq, encoded)

    async def _refresh(self) -> None:
        await presence.refresh(self.records, self.record_ids())

    async def _reap(self) -> None:
        await presence.reap(self.records)

    async def _sweep_groups(self) -> None:
        self.remember_deleted_groups(await sweep_deleted_groups(self.database))

    async def _prune(self) -> None:
        deleted = await prune(self.events)
        if deleted:
            log.info("deleted %s events older than the retention period", deleted)
