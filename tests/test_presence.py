"""Presence: online at login or when a socket opens, offline at logout or a grace period after the last socket
closes, or when the process holding the sockets stops heart-beating; friends get one `presence` event per
transition. One reaper at a time (a lease), and an idle process's upkeep counted to the command."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from beanie import init_beanie
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.database import Database
from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

from bench.round_trips import HOUSEKEEPING
from chat_api.common.clock import utc_now
from chat_api.http.types import ChatApp
from chat_api.realtime import presence
from chat_api.realtime.models import OPEN, REAPER_LEASE, PresenceRecord, ProcessHeartbeat
from chat_api.store.documents import DOCUMENT_MODELS
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


async def lead(process_id: str) -> None:
    """Make `process_id` the reaper. The hub's own reaper (every REAP_INTERVAL) may take a free lease
    first: then free it and take it again."""
    leases = ProcessHeartbeat.get_pymongo_collection()
    async with asyncio.timeout(5):
        while True:
            await leases.delete_one({"_id": REAPER_LEASE})
            await presence.reap(process_id)
            lease = await leases.find_one({"_id": REAPER_LEASE})
            if lease is not None and lease["holder"] == process_id:
                return


def stopped_beating(seconds_past_the_margin: float) -> Any:
    """The moment of a last heartbeat whose expiry is `seconds_past_the_margin` beyond the skew margin."""
    return utc_now() - timedelta(seconds=presence.HEARTBEAT_TTL + presence.SKEW_MARGIN + seconds_past_the_margin)


class TaskCommands(CommandListener):
    """The store commands each watched task starts; the others (the hub's own upkeep, requests) are left out."""

    def __init__(self) -> None:
        self.by_task: dict[asyncio.Task[Any], list[tuple[str, str]]] = {}

    def watch(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coroutine)
        self.by_task[task] = []
        return task

    def started(self, event: CommandStartedEvent) -> None:
        task = asyncio.current_task()
        if task in self.by_task and event.command_name not in HOUSEKEEPING:
            target = event.command.get("collection", event.command.get(event.command_name))
            self.by_task[task].append((event.command_name, target if isinstance(target, str) else ""))

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


@asynccontextmanager
async def counting(app: ChatApp, store_uri: str, db_name: str) -> AsyncIterator[TaskCommands]:
    """The documents bound to a client of their own that counts the commands of the watched tasks."""
    listener = TaskCommands()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(store_uri, tz_aware=True, event_listeners=[listener])
    try:
        await init_beanie(database=client[db_name], document_models=DOCUMENT_MODELS, skip_indexes=True)
        yield listener
    finally:
        await init_beanie(database=app.ctx.database, document_models=DOCUMENT_MODELS, skip_indexes=True)
        await client.close()


def presence_of(user: TestUser, flag: str) -> Any:
    def done(frames: list[dict[str, Any]]) -> bool:
        # A signal: no `seq` (issue 12, never numbered).
        return bool(frames) and frames[-1] == {"type": "presence", "user_id": user.id, "flag": flag}

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


def test_a_sockets_record_names_its_process_and_has_no_expiry_while_open(api: Api, app: ChatApp) -> None:
    alice, _ = friends_on_sockets(api)

    async def scenario() -> None:
        ws, _ = await open_socket(ws_url(api), alice)
        records = await PresenceRecord.get_pymongo_collection().find({"user_id": alice.id}).to_list()
        assert [(record["process"], record["expires_at"]) for record in records] == [(app.ctx.hub.worker, OPEN)]
        await ws.close()
        await wait_for_flag(alice, "offline")
        assert await PresenceRecord.get_pymongo_collection().find_one({"user_id": alice.id}) is None

    run(api, scenario())


def test_a_user_stays_online_while_their_process_heartbeats_with_no_write_per_socket(api: Api) -> None:
    alice, _ = friends_on_sockets(api)

    async def scenario() -> None:
        await PresenceRecord.get_pymongo_collection().delete_many({"process": "login"})
        await presence.hold("busy-host:7:socket", alice.id, "busy-host:7")
        await lead("test-reaper")
        # Ten minutes on, with nothing written for the socket: only its process's heartbeats.
        later = utc_now() + timedelta(minutes=10)
        await presence.heartbeat("busy-host:7", now=later)
        assert await presence.reap("test-reaper", now=later) == 0
        assert await flag_of(alice) == "online"
        record = await PresenceRecord.get_pymongo_collection().find_one({"_id": "busy-host:7:socket"})
        assert record is not None
        assert record["expires_at"] == OPEN

    run(api, scenario())


def test_a_process_that_stops_heartbeating_has_its_users_taken_offline_by_the_reaper(api: Api) -> None:
    alice, bob = friends_on_sockets(api)

    async def scenario() -> None:
        # What a crashed process leaves: its last heartbeat, expired beyond the margin, and an open socket's record.
        await presence.heartbeat("crashed-host:4242", now=stopped_beating(1))
        await presence.hold("crashed-host:4242:abc", alice.id, "crashed-host:4242")
        watcher, _ = await open_socket(ws_url(api), bob)
        await lead("test-reaper")
        await frames_until(watcher, presence_of(alice, "offline"), timeout=5)
        assert await flag_of(alice) == "offline"
        assert await PresenceRecord.get_pymongo_collection().find_one({"_id": "crashed-host:4242:abc"}) is None
        assert await ProcessHeartbeat.get_pymongo_collection().find_one({"_id": "crashed-host:4242"}) is None
        await watcher.close()

    run(api, scenario())


def test_clock_skew_within_the_margin_does_not_take_a_live_processs_users_offline(api: Api) -> None:
    alice, _ = friends_on_sockets(api)

    async def scenario() -> None:
        await lead("test-reaper")
        # A process whose clock runs 13 s behind the reaper's: its fresh heartbeat looks 13 s expired.
        await presence.heartbeat("slow-clock:1", now=utc_now() - timedelta(seconds=presence.HEARTBEAT_TTL + 13))
        await presence.hold("slow-clock:1:socket", alice.id, "slow-clock:1")
        assert presence.SKEW_MARGIN > 13
        assert await presence.reap("test-reaper") == 0
        assert await flag_of(alice) == "online"
        assert await PresenceRecord.get_pymongo_collection().find_one({"_id": "slow-clock:1:socket"}) is not None
        # Past the margin, it is dead.
        later = utc_now() + timedelta(seconds=presence.SKEW_MARGIN - 13 + 1)
        assert await presence.reap("test-reaper", now=later) == 1
        assert await flag_of(alice) == "offline"

    run(api, scenario())


def test_two_reapers_at_once_only_the_lease_holder_reaps(api: Api, app: ChatApp, store_uri: str, db_name: str) -> None:
    alice, _ = friends_on_sockets(api)

    async def scenario() -> None:
        await lead("reaper-a")
        await presence.heartbeat("crashed-host:1", now=stopped_beating(1))
        await presence.hold("crashed-host:1:socket", alice.id, "crashed-host:1")
        async with counting(app, store_uri, db_name) as commands:
            holder = commands.watch(presence.reap("reaper-a"))
            other = commands.watch(presence.reap("reaper-b"))
            assert list(await asyncio.gather(holder, other)) == [1, 0]
        # The other spent one command: its try for the lease.
        assert commands.by_task[other] == [("update", "processes")]
        assert await flag_of(alice) == "offline"
        lease = await ProcessHeartbeat.get_pymongo_collection().find_one({"_id": REAPER_LEASE})
        assert lease is not None
        assert lease["holder"] == "reaper-a"

    run(api, scenario())


def test_an_idle_processs_presence_upkeep_over_a_minute_is_a_few_exact_commands(
    api: Api, app: ChatApp, store_uri: str, db_name: str, sync_db: Database[dict[str, Any]]
) -> None:
    """As the hub calls them: a heartbeat every HEARTBEAT_INTERVAL, a reap every REAP_INTERVAL."""
    minute = 60.0
    beats, reaps = int(minute / presence.HEARTBEAT_INTERVAL), int(minute / presence.REAP_INTERVAL)
    assert (beats, reaps) == (6, 3)

    async def upkeep(process_id: str) -> None:
        for tick in range(int(minute)):
            if tick % presence.HEARTBEAT_INTERVAL == 0:
                await presence.heartbeat(process_id)
            if tick % presence.REAP_INTERVAL == 0:
                assert await presence.reap(process_id) == 0

    async def scenario() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        await lead("idle-leader")
        async with counting(app, store_uri, db_name) as commands:
            leader = commands.watch(upkeep("idle-leader"))
            follower = commands.watch(upkeep("idle-follower"))
            await asyncio.gather(leader, follower)
        return commands.by_task[leader], commands.by_task[follower]

    leader, follower = run(api, scenario())
    # The follower: its heartbeats and one try for the lease per period.
    assert follower == [("update", "processes")] * (beats + reaps)
    # The leader: its heartbeats, and per period the lease's renewal, the look for dead processes and the look
    # for expired records.
    heartbeat, round_ = (
        [("update", "processes")],
        [("update", "processes"), ("find", "processes"), ("find", "presence")],
    )
    assert leader == (heartbeat + round_ + heartbeat) * reaps  # at 0 s, 10 s; 20 s, 30 s; 40 s, 50 s
    assert len(leader) / minute == 0.25
    assert len(follower) / minute == 0.15


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
