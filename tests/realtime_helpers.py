"""WebSocket helpers for the real-time tests: run a scenario in the test server's loop, connect, read frames."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from bson import ObjectId
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from chat_api.common.clock import utc_now
from chat_api.friends.models import Friendship, pair_key
from chat_api.groups.models import Group, GroupMember
from chat_api.http.types import ChatApp
from chat_api.realtime.hub import Hub
from tests.helpers import Api, TestUser

T = TypeVar("T")


@pytest.fixture
def fresh_hub(app: ChatApp) -> None:
    """clean_collections empties the event log, whose numbers then start again at 1: the hub
    would notice within RESET_CHECK_INTERVAL, this tells it at once."""
    hub: Hub = app.ctx.hub
    hub.last_seq, hub.last_id = 0, None


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


async def befriend(a: TestUser, b: TestUser) -> None:
    """Both directions of a friendship, as the friends routes store it."""
    now = utc_now()
    pair = pair_key(a.id, b.id)
    await Friendship.get_pymongo_collection().insert_many(
        [
            {"owner_id": a.id, "friend_id": b.id, "pair": pair, "created_at": now, "message_n": 0, "read_n": 0},
            {"owner_id": b.id, "friend_id": a.id, "pair": pair, "created_at": now, "message_n": 0, "read_n": 0},
        ]
    )


async def make_group(lord: TestUser, *members: TestUser) -> str:
    now = utc_now()
    group_id = ObjectId()
    await Group.get_pymongo_collection().insert_one(
        {"_id": group_id, "group_name": "g", "lord_id": lord.id, "created_at": now, "last_n": 0, "message_n": 0}
    )
    rows = [(lord, "lord")] + [(member, "user") for member in members]
    await GroupMember.get_pymongo_collection().insert_many(
        [
            {"group_id": str(group_id), "user_id": u.id, "identity": identity, "joined_at": now, "read_n": 0}
            for u, identity in rows
        ]
    )
    return str(group_id)


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


def friends_over_rest(api: Api, a: TestUser, b: TestUser) -> None:
    """A friend request from `a`, agreed by `b`, through the public routes."""
    sent = api.post("/api/user-requests", headers=a.headers, json={"to_id": b.id, "verify_data": "hi"})
    assert sent.status == 201, sent.text
    answer = f"/api/user-requests/{sent.json['user_request_id']}"
    assert api.put(answer, headers=b.headers, json={"status": "agree"}).status == 204
