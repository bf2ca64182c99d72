"""Presence: online at login or when a socket opens, offline at logout or a grace period after the last socket
closes, or when a dead worker's records expire; friends get one `presence` event per transition."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from bson import ObjectId

from chat_api.common.clock import utc_now
from chat_api.events.models import Event
from chat_api.realtime import presence
from chat_api.realtime.models import PresenceRecord
from chat_api.users.models import User
from tests.factories import TestUser, new_friends
from tests.helpers import Api
from tests.realtime_helpers import frames_until, fresh_hub, no_frame, open_socket, run, ws_url

pytestmark = pytest.mark.usefixtures(fresh_hub.__name__)


async def flag_of(user: TestUser) -> str:
    doc = await User.get_pymongo_collection().find_one({"_id": ObjectId(user.id)}, {"flag": 1})
    assert doc is not None
    flag: str = doc["flag"]
    return flag


async def forget_login(user: TestUser) -> None:
    """Only sockets keep the user online from here on."""
    await PresenceRecord.get_pymongo_collection().delete_one({"_id": f"login:{user.id}"})


async def wait_for_flag(user: TestUser, flag: str, timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while await flag_of(user) != flag:
            await asyncio.sleep(0.05)


def friends_on_sockets(api: Api) -> tuple[TestUser, TestUser]:
    """Alice and Bob, friends, and only sockets keep Alice online from here on."""
    alice, bob = new_friends(api)
    run(api, forget_login(alice))
    return alice, bob


def presence_of(user: TestUser, flag: str) -> Any:
    def done(frames: list[dict[str, Any]]) -> bool:
        return bool(frames) and frames[-1] == {
            "type": "presence",
            "seq": frames[-1]["seq"],
            "user_id": user.id,
            "flag": flag,
        }

    return done


def test_a_socket_opening_marks_the_user_online_and_tells_friends(api: Api) -> None:
    alice, bob = friends_on_sockets(api)

    async def scenario() -> None:
        await User.get_pymongo_collection().update_one({"_id": ObjectId(alice.id)}, {"$set": {"flag": "offline"}})
        watcher, _ = await open_socket(ws_url(api), bob)
        ws, _ = await open_socket(ws_url(api), alice)
        await frames_until(watcher, presence_of(alice, "online"))
        async with httpx.AsyncClient(base_url=f"http://{api.client.host}:{api.client.port}") as http:
            friends = (await http.get("/api/friends", headers=bob.headers)).json()
        assert [(friend["id"], friend["flag"]) for friend in friends] == [(alice.id, "online")]
        await ws.close()
        await watcher.close()

    run(api, scenario())


def test_the_last_socket_closing_marks_offline_after_the_grace_period(api: Api) -> None:
    alice, bob = friends_on_sockets(api)

    async def scenario() -> None:
        watcher, _ = await open_socket(ws_url(api), bob)
        first, _ = await open_socket(ws_url(api), alice)
        second, _ = await open_socket(ws_url(api), alice)
        await first.close()
        await no_frame(watcher, wait=1.5)  # grace 0.3 s and the reaper's 0.5 s: one socket is still open
        assert await flag_of(alice) == "online"
        await second.close()
        frames = await frames_until(watcher, presence_of(alice, "offline"), timeout=5)
        assert len(frames) == 1
        assert await flag_of(alice) == "offline"
        await watcher.close()

    run(api, scenario())


def test_a_dead_workers_records_expire_and_its_users_go_offline(api: Api) -> None:
    alice, bob = friends_on_sockets(api)

    async def scenario() -> None:
        # What a crashed worker leaves: a record nobody refreshes any more.
        await PresenceRecord.get_pymongo_collection().insert_one(
            {
                "_id": "crashed-host:4242:abc",
                "user_id": alice.id,
                "worker": "crashed-host:4242",
                "expires_at": utc_now() - timedelta(seconds=1),
            }
        )
        watcher, _ = await open_socket(ws_url(api), bob)
        await frames_until(watcher, presence_of(alice, "offline"), timeout=5)
        assert await flag_of(alice) == "offline"
        assert await PresenceRecord.get_pymongo_collection().find_one({"_id": "crashed-host:4242:abc"}) is None
        await watcher.close()

    run(api, scenario())


def test_racing_reapers_publish_one_transition(api: Api) -> None:
    alice, _ = friends_on_sockets(api)

    async def scenario() -> None:
        expired = utc_now() - timedelta(seconds=5)
        await PresenceRecord.get_pymongo_collection().insert_many(
            [{"_id": f"w{n}:x", "user_id": alice.id, "worker": f"w{n}", "expires_at": expired} for n in range(3)]
        )
        results = await asyncio.gather(*(presence.reap() for _ in range(4)))
        assert sum(results) <= 1
        await asyncio.sleep(1)  # the hub's own reaper may have taken it
        events = await Event.get_pymongo_collection().find({"type": "presence", "data.user_id": alice.id}).to_list()
        assert [event["data"]["flag"] for event in events] == ["offline"]

    run(api, scenario())


def test_login_and_logout_tell_friends(api: Api) -> None:
    alice, bob = new_friends(api, login=False)

    async def scenario() -> None:
        watcher, _ = await open_socket(ws_url(api), bob)
        async with httpx.AsyncClient(base_url=f"http://{api.client.host}:{api.client.port}") as http:
            login = await http.post("/api/login", json={"chat_id": alice.chat_id, "password": alice.password})
            token = login.json()["token"]
            await frames_until(watcher, presence_of(alice, "online"))
            assert await flag_of(alice) == "online"
            assert (await http.get("/api/logout", headers={"Authorization": token})).status_code == 204
        await frames_until(watcher, presence_of(alice, "offline"))
        assert await flag_of(alice) == "offline"
        assert await PresenceRecord.get_pymongo_collection().find_one({"user_id": alice.id}) is None
        await watcher.close()

    run(api, scenario())


def test_reconnecting_within_the_grace_period_keeps_the_user_online(other_app: Any) -> None:
    with other_app(presence_grace=3.0) as client:
        api = Api(client)
        alice, bob = friends_on_sockets(api)

        async def scenario() -> None:
            watcher, _ = await open_socket(ws_url(api), bob)
            ws, _ = await open_socket(ws_url(api), alice)
            await ws.close()
            await asyncio.sleep(0.5)  # a page reload
            ws, _ = await open_socket(ws_url(api), alice)
            await no_frame(watcher, wait=4)
            assert await flag_of(alice) == "online"
            await ws.close()
            await watcher.close()

        run(api, scenario())
