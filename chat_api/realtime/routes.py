"""The WebSocket endpoint `/ws`: authenticate, resume from `last_seq`, then live events, typing and ping."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import uuid
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic.response import json as json_response
from sanic.server.websockets.impl import WebsocketImplProtocol
from sanic_ext.extensions.openapi import openapi

from chat_api.blocks import repository as blocks
from chat_api.common.errors import Conflict
from chat_api.common.fields import whole_number
from chat_api.config import Settings
from chat_api.events.schemas import EventOut, EventQuery
from chat_api.events.service import encode, home_partition, newest_seq, resumable, signal
from chat_api.friends import repository as friends
from chat_api.groups import repository as groups
from chat_api.http.auth import TokenRefused, current_user_id, user_for_token
from chat_api.http.endpoint import endpoint
from chat_api.http.types import ChatApp
from chat_api.metrics import registry as metrics
from chat_api.realtime import presence, stream
from chat_api.realtime.hub import UNAUTHORIZED, Connection, Hub
from chat_api.users.repository import CurrentUser, user_exists

socket_bp = Blueprint("realtime", strict_slashes=False)
events_bp = Blueprint("events", url_prefix="/api", strict_slashes=False)
bp = Blueprint.group(socket_bp, events_bp)
RESYNC = "resync_required: events after this seq are no longer kept (or it was never given out); refetch over REST"
log = logging.getLogger("chat_api.realtime")

AUTH_TIMEOUT = 5.0
BACKLOG_PAGE = 200
_OBJECT_ID = re.compile(r"[0-9a-f]{24}")
MAX_SEQ = 2**63 - 1


class FrameError(Exception):
    """A client frame that cannot be acted on; the message goes back in an `error` frame."""


def setup_realtime(app: ChatApp) -> None:
    """Register after the store's listeners: the hub reads the event log as it starts."""
    app.before_server_start(start_hub)
    app.before_server_stop(stop_hub)


async def start_hub(app: ChatApp) -> None:
    hub = Hub(app.ctx.settings)
    app.ctx.hub = hub
    await hub.start()


async def stop_hub(app: ChatApp) -> None:
    hub: Hub | None = getattr(app.ctx, "hub", None)
    if hub is not None:
        await hub.stop()


def _last_seq(value: Any) -> int | None:
    """A non-negative whole number (a string of ASCII digits too, from the query), else FrameError.

    Not `str.isdigit()`: it takes "²" (which `int()` then refuses: a crash) and "١٢" (which `int()`
    reads as 12).
    """
    if value is None:
        return None
    try:
        return whole_number(value, minimum=0, maximum=MAX_SEQ)
    except ValueError:
        raise FrameError("last_seq must be a whole number of at least 0") from None


async def _authenticate(request: Request, ws: WebsocketImplProtocol) -> tuple[CurrentUser, int | None] | None:
    """`?token=` (and `?last_seq=`), else a first frame `{"type": "auth", ...}` within 5 s; else close 4401."""
    settings: Settings = request.app.ctx.settings
    token: Any = request.args.get("token")
    last: Any = request.args.get("last_seq")
    if token is None:
        raw = await ws.recv(timeout=AUTH_TIMEOUT)
        if raw is None:
            await ws.close(UNAUTHORIZED, "no auth frame within 5 seconds")
            return None
        try:
            message = json.loads(raw)
        except ValueError:
            message = None
        if not isinstance(message, dict) or message.get("type") != "auth" or not isinstance(message.get("token"), str):
            await ws.close(UNAUTHORIZED, 'the first frame must be {"type": "auth", "token": "Bearer ..."}')
            return None
        token, last = message["token"], message.get("last_seq")
    try:
        last_seq = _last_seq(last)
    except FrameError as error:
        await ws.close(UNAUTHORIZED, str(error))
        return None
    try:
        # The same rules as @protected: a valid signature, an existing user, an unrevoked version.
        user = await user_for_token(token, settings)
    except TokenRefused:
        await ws.close(UNAUTHORIZED, "invalid, expired or revoked token")
        return None
    return user, last_seq


@socket_bp.websocket("/ws")  # type: ignore[untyped-decorator]
@openapi.exclude()  # not an HTTP route: docs/api.md, "Real time", describes it
async def websocket(request: Request, ws: WebsocketImplProtocol) -> None:
    """Real-time events for the token's user (docs/api.md, "Real time")."""
    authenticated = await _authenticate(request, ws)
    if authenticated is None:
        return
    user, last_seq = authenticated
    app: ChatApp = request.app
    settings: Settings = app.ctx.settings
    hub: Hub = app.ctx.hub
    user_id = str(user.id)
    connection = Connection(
        ws, user_id, user.token_version, f"{hub.worker}:{uuid.uuid4().hex}", settings.ws_send_buffer
    )
    # Registered before the log is read: whatever the loop dispatches from now on is buffered,
    # and what it dispatched before is in the store, so the backlog plus the buffer miss nothing.
    first_here = hub.register(connection)
    recorder = metrics.active  # the same one at the close: a gauge raised is lowered
    if recorder is not None:
        recorder.websockets.inc()
    try:
        if first_here:
            # After registering: a membership event dispatched from now on finds the user tracked.
            hub.track_groups(user_id, await stream.group_ids_of(user_id))
        await presence.hold(connection.record_id, user_id, hub.worker)
        await _resume(connection, last_seq, settings, hub)
        await _serve(connection)
    finally:
        hub.unregister(connection)
        if recorder is not None:
            recorder.websockets.dec()
        try:
            await presence.release(connection.record_id, user_id, settings.presence_grace)
        except Exception:  # the store is down: the record expires by itself
            log.warning("could not release the presence record of user %s", user_id)


def ready_frame(connection: Connection, seq: int, settings: Settings) -> dict[str, Any]:
    ready: dict[str, Any] = {"type": "ready", "seq": seq, "user_id": connection.user_id}
    if not settings.is_production:
        # Which worker process holds the socket (the multi-process tests use it).
        ready["worker"] = os.getpid()
    return ready


async def _resume(connection: Connection, last_seq: int | None, settings: Settings, hub: Hub) -> None:
    """`ready`, then the stored events after `last_seq` in order, then the live ones (each once).

    The backlog is read up to what this process has dispatched (no hole below can still fill); the
    live events after it were buffered since the socket registered.
    """
    partition = home_partition(connection.user_id)
    settled = hub.settled(partition)
    if last_seq is None:
        # Only what is numbered from now on: what was numbered before (even if this process has not dispatched
        # it yet) is before the socket, as the `ready`'s seq says.
        start = max(settled, await newest_seq(partition))
        connection.push(encode(ready_frame(connection, start, settings)))
        connection.go_live(start)
        return
    connection.push(encode(ready_frame(connection, settled, settings)))
    resume, newest = await resumable(partition, last_seq)
    if not resume:
        # Gone (expired) or never given out: the client refetches over REST; live from now on.
        connection.push(encode({"type": "resync_required", "seq": newest}))
        connection.go_live(settled)
        return
    after = last_seq
    groups_now = hub.groups_of.get(connection.user_id, ())
    async for page in stream.backlog(connection.user_id, groups_now, last_seq, settled, BACKLOG_PAGE):
        for event in page.events:
            if not hub.hides(event):
                await connection.push_waiting(encode(event))
        after = page.read_upto
        if connection.closing:
            break
    # Live events buffered meanwhile above `after` follow; those at or below were sent (or the client had
    # them: a `last_seq` beyond what this process has dispatched came from another one).
    connection.go_live(max(after, last_seq))


async def _serve(connection: Connection) -> None:
    ws = connection.ws
    while True:
        raw = await ws.recv()
        if raw is None:
            continue
        try:
            answer = await _handle(connection, raw)
        except FrameError as error:
            answer = {"type": "error", "message": str(error)}
        if answer is not None:
            connection.push(encode(answer))


async def _handle(connection: Connection, raw: str | bytes) -> dict[str, Any] | None:
    if isinstance(raw, bytes):
        raise FrameError("frames must be JSON text")
    try:
        message = json.loads(raw)
    except ValueError:
        raise FrameError("frames must be JSON text") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise FrameError('a frame is a JSON object with a "type"')
    kind = message["type"]
    if kind == "ping":
        return {"type": "pong"}
    if kind == "typing":
        await _typing(connection.user_id, message)
        return None
    if kind == "auth":
        raise FrameError("already authenticated")
    raise FrameError("unknown frame type; expected ping or typing")


async def _typing(user_id: str, message: dict[str, Any]) -> None:
    """Forward a typing notice to the friend or the group's other members (transient: never replayed)."""
    to_id, group_id = message.get("to_id"), message.get("group_id")
    if (to_id is None) == (group_id is None) or set(message) - {"type", "to_id", "group_id"}:
        raise FrameError("typing takes exactly one of to_id or group_id")
    target = to_id if to_id is not None else group_id
    if not isinstance(target, str) or not _OBJECT_ID.fullmatch(target):
        raise FrameError("to_id and group_id are 24 lowercase hex digits")
    if to_id is not None:
        # The block is read beside the friendship (no wait): a friend who blocks the typist gets nothing.
        friends_now, blocked = await asyncio.gather(
            friends.are_friends(user_id, to_id), blocks.blocks_user(to_id, user_id)
        )
        if not friends_now:
            # As for a message: an unknown (or deleted) user is named as such, checked on refusal only.
            if not await user_exists(to_id):
                raise FrameError("no such user")
            raise FrameError("typing notices go to friends only")
        if not blocked:  # dropped without a word: a block is not told (docs/decisions.md, "Blocks")
            await signal("typing", {"from_id": user_id, "to_id": to_id}, to=[to_id])
        return
    if await groups.membership(target, user_id, {"_id": 1}) is None:
        raise FrameError("typing notices go to groups you are a member of")
    # Named by the group: each process tells the members it holds sockets for, but the typist.
    await signal("typing", {"from_id": user_id, "group_id": target}, group=target)


@events_bp.get("/events")
@endpoint(
    tag="events",
    query=EventQuery,
    responses={200: (EventOut, "The caller's stored events after `after`, oldest first", "many")},
    headers={
        200: {
            "X-Has-More": "`true` when more events follow the last one: ask again with after=<its seq>",
            "X-Newest-Seq": "The newest seq of the log when the page was read",
        }
    },
    errors=(400, 401, 422),
)
async def list_events(request: Request, query: EventQuery) -> HTTPResponse:
    """Stored events (messages, group messages, friend requests) after a seq; 422 when a resync is needed."""
    user_id = current_user_id(request)
    hub: Hub = request.app.ctx.hub
    partition = home_partition(user_id)
    ok, newest = await resumable(partition, query.after)
    if not ok:
        raise Conflict(RESYNC)
    # Up to what this process has dispatched: a hole below it can no longer fill.
    settled = hub.settled(partition)
    groups_now = await stream.group_ids_of(user_id)
    found: list[dict[str, Any]] = []
    # One more than asked tells whether there is more, without a count.
    async for page in stream.backlog(user_id, groups_now, query.after, settled, query.limit + 1):
        # A deleted group's events, while a deletion cut short waits for the sweeper, as on the socket.
        found.extend(event for event in page.events if not hub.hides(event))
        if len(found) > query.limit:
            break
    more = len(found) > query.limit
    return json_response(
        found[: query.limit],
        headers={"X-Has-More": "true" if more else "false", "X-Newest-Seq": str(newest)},
        dumps=encode,
    )
