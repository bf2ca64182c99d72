"""The WebSocket endpoint `/ws`: authenticate, resume from `last_seq`, then live events, typing and ping."""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from typing import Any

from sanic import Blueprint, Request
from sanic.server.websockets.impl import WebsocketImplProtocol
from sanic_ext.extensions.openapi import openapi

from chat_api.common.fields import whole_number
from chat_api.config import Settings
from chat_api.events.models import EventType
from chat_api.events.service import encode, events_after, newest_seq, publish, resumable
from chat_api.friends import repository as friends
from chat_api.groups import repository as groups
from chat_api.http.auth import TokenRefused, user_for_token
from chat_api.http.types import ChatApp
from chat_api.realtime import presence
from chat_api.realtime.hub import UNAUTHORIZED, Connection, Hub
from chat_api.users.repository import CurrentUser, user_exists

bp = Blueprint("realtime", strict_slashes=False)
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
    await hub.start(app.ctx.store_uri)


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


@bp.websocket("/ws")  # type: ignore[untyped-decorator]
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
    hub.register(connection)
    try:
        await presence.hold(connection.record_id, user_id, hub.worker, presence.RECORD_TTL)
        await _resume(connection, last_seq, settings, hub)
        await _serve(connection)
    finally:
        hub.unregister(connection)
        try:
            await presence.release(connection.record_id, settings.presence_grace)
        except Exception:  # the store is down: the record expires by itself
            log.warning("could not release the presence record of user %s", user_id)


async def _resume(connection: Connection, last_seq: int | None, settings: Settings, hub: Hub) -> None:
    """`ready`, then the stored events after `last_seq` in order, then the live ones (each once)."""
    resume, newest = (False, await newest_seq()) if last_seq is None else await resumable(last_seq)
    ready: dict[str, Any] = {"type": "ready", "seq": newest, "user_id": connection.user_id}
    if not settings.is_production:
        # Which worker process holds the socket (the two-worker test uses it).
        ready["worker"] = os.getpid()
    connection.push(encode(ready))
    if last_seq is None:
        connection.go_live(newest)
        return
    if not resume:
        # Gone (expired) or never given out: the client refetches over REST; live from now on.
        connection.push(encode({"type": "resync_required", "seq": newest}))
        connection.go_live(newest)
        return
    after = last_seq
    while not connection.closing:
        page = await events_after(connection.user_id, after, BACKLOG_PAGE)
        for event in page:
            after = event["seq"]
            if not hub.hides(event):
                await connection.push_waiting(encode(event))
        if len(page) < BACKLOG_PAGE:
            break
    # Live events buffered meanwhile with a seq above `after` follow; those at or below were sent.
    connection.go_live(after)


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
    type_: EventType = "typing"
    if to_id is not None:
        if not await friends.are_friends(user_id, to_id):
            # As for a message: an unknown (or deleted) user is named as such, checked on refusal only.
            if not await user_exists(to_id):
                raise FrameError("no such user")
            raise FrameError("typing notices go to friends only")
        await publish(type_, [to_id], {"from_id": user_id, "to_id": to_id}, transient=True)
        return
    member_ids = await groups.member_ids(target)
    if user_id not in member_ids:
        raise FrameError("typing notices go to groups you are a member of")
    others = [member for member in member_ids if member != user_id]
    if others:
        await publish(type_, others, {"from_id": user_id, "group_id": group_id}, transient=True)
