"""WebSocket helpers for the real-time tests: run a scenario in the test server's loop, connect, read frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from bson import ObjectId
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from chat_api.common.clock import utc_now
from chat_api.http.types import ChatApp
from chat_api.realtime.hub import Hub
from tests.factories import TestUser
from tests.helpers import Api

T = TypeVar("T")


@pytest.fixture
def fresh_hub(app: ChatApp) -> None:
    """clean_collections empties the event log and its counters, whose numbers then start again at 1: the
    hub would notice at its next look, this tells it at once."""
    hub: Hub = app.ctx.hub
    hub.reset_all()


def run(api: Api, scenario: Coroutine[Any, Any, T], timeout: float = 60) -> T:
    """The server runs in the client's event loop: a scenario runs there too, so both make progress."""
    result: T = api.client._loop.run_until_complete(asyncio.wait_for(scenario, timeout))
    return result


def ws_url(api: Api, query: str = "") -> str:
    return f"ws://{api.client.host}:{api.client.port}/ws{query}"


async def open_socket(
    url: str, user: TestUser, last_seq: int | None = None, **options: Any
) -> tuple[ClientConnection, dict[str, Any]]:
    """Connect, authenticate with an auth frame, and return the socket and its `ready` frame."""
    ws = await connect(url, **options)
    auth: dict[str, Any] = {"type": "auth", "token": user.token}
    if last_seq is not None:
        auth["last_seq"] = last_seq
    await ws.send(json.dumps(auth))
    ready = await next_frame(ws)
    assert ready["type"] == "ready", ready
    return ws, ready


async def next_frame(ws: ClientConnection, timeout: float = 5) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return frame


async def frames_until(
    ws: ClientConnection, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 10
) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not done(frames):
            frames.append(json.loads(await ws.recv()))
    return frames


async def no_frame(ws: ClientConnection, wait: float = 0.3) -> None:
    try:
        frame = await asyncio.wait_for(ws.recv(), wait)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected frame {frame!r}")


async def close_code(ws: ClientConnection, timeout: float = 8) -> int | None:
    """Wait for the server to close the socket; its close code."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except ConnectionClosed:
        pass
    return ws.close_code


@dataclass
class WorkerSocket:
    """An open socket and where it landed: the server's URL and the worker process (`ready`'s `worker`) holding it."""

    ws: ClientConnection
    url: str
    worker: int
    ready: dict[str, Any]


async def sockets_on_every_worker(
    urls: Sequence[str], user: TestUser, workers_each: int = 2, timeout: float = 20
) -> list[WorkerSocket]:
    """One socket of `user` on every worker of every server in `urls` (`workers_each` workers each; outside
    production `ready` names its worker). The kernel hands connections to workers itself, so sockets are opened
    until each worker holds one, the extra ones closed; a worker that never gets one within `timeout` fails."""
    held: dict[int, WorkerSocket] = {}
    extra: list[ClientConnection] = []
    deadline = time.monotonic() + timeout
    try:
        for url in urls:
            on_this_url = 0
            while on_this_url < workers_each:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{url}: sockets reached only {on_this_url} of {workers_each} workers")
                ws, ready = await open_socket(url, user)
                if ready["worker"] in held:
                    extra.append(ws)
                    continue
                held[ready["worker"]] = WorkerSocket(ws, url, ready["worker"], ready)
                on_this_url += 1
    except BaseException:
        extra.extend(socket.ws for socket in held.values())
        raise
    finally:
        for ws in extra:
            with contextlib.suppress(ConnectionClosed):
                await ws.close()
    return list(held.values())


def message_data(sender: TestUser, to: TestUser, text: str) -> dict[str, Any]:
    """The `message` event data the direct-message route publishes."""
    message_id = str(ObjectId())
    return {
        "message": {
            "id": message_id,
            "from_id": sender.id,
            "to_id": to.id,
            "msg": text,
            "msg_type": "txt",
            "client_msg_id": None,
            "created_at": (utc_now() - timedelta(seconds=0)).isoformat(),
            "seq": None,
        }
    }
