"""Two instances through one Redis (issue 12, goal 3): two `python -m chat_api` processes on two ports, 2 workers
each, on one store and one real Redis (REDIS_URL); sockets on all four workers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis.asyncio as aioredis
from bson import ObjectId
from pymongo import MongoClient, ReturnDocument
from pymongo.database import Database
from websockets.exceptions import ConnectionClosed

from chat_api.events.models import new_event_doc, partition_of
from chat_api.store.documents import DOCUMENT_MODELS
from chat_api.store.embedded import EmbeddedStore
from tests.factories import TestUser, create_group, create_user, make_friends
from tests.helpers import ProcessApi, running_server, running_servers
from tests.realtime_helpers import WorkerSocket, close_code, open_socket, sockets_on_every_worker
from tests.redis_server import RedisServer, ping
from tests.wire_counter import CountingProxy

# The instances run against a store (or, on an external MONGODB_URI, a database) of their own.
pytestmark = [pytest.mark.no_store, pytest.mark.redis, pytest.mark.slow]
WORKERS = 2  # per instance
EVENT_TYPES = ("message", "group_message")
IDLE_SECONDS = 10
MAX_IDLE_COMMANDS_PER_SECOND = 1.0  # per worker process: issue 12, goal 1


@dataclass
class Instances:
    """Two app instances on one store and one Redis; `proxy` counts what the store is sent (None on an external
    store, which the processes reach directly)."""

    a: ProcessApi
    b: ProcessApi
    redis: RedisServer
    proxy: CountingProxy | None
    logs: tuple[Path, Path]
    store_uri: str
    database: str

    @property
    def apis(self) -> tuple[ProcessApi, ProcessApi]:
        return self.a, self.b

    @property
    def ws_urls(self) -> list[str]:
        return [api.base_url.replace("http://", "ws://") + "/ws" for api in self.apis]

    def user(self) -> TestUser:
        return create_user(self.a)


def embedded_store_address(store_uri: str) -> tuple[str, int] | None:
    """Host and port of the session's store when it is a single plain host (the embedded one): a proxy can stand in
    front of it. An external MONGODB_URI (replica set, SRV, credentials) is used as it is."""
    parts = urlsplit(store_uri)
    if parts.scheme != "mongodb" or "," in parts.netloc or "@" in parts.netloc or parts.query:
        return None
    return parts.hostname or "127.0.0.1", parts.port or 27017


@pytest.fixture(scope="module")
def fanout_store(store_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A store process of the module's own when the suite's is the embedded one: nx-27017 shares one namespace
    between database names, so a database of its own on the session's store would share (and, dropped, take
    away) the session's collections and indexes. An external MONGODB_URI isolates databases itself."""
    if embedded_store_address(store_uri) is None:
        yield store_uri
        return
    store = EmbeddedStore(tmp_path_factory.mktemp("fanout_store")).start()
    try:
        yield store.uri
    finally:
        store.stop()


@pytest.fixture(scope="module")
def instances(
    fanout_store: str, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Instances]:
    redis_server.flush()
    store_uri = fanout_store
    database = f"chat_fanout_{secrets.token_hex(4)}"
    address = embedded_store_address(store_uri)
    proxy = CountingProxy(*address).start() if address is not None else None
    settings = {
        "MONGODB_URI": proxy.uri if proxy is not None else store_uri,
        "MONGODB_DB": database,
        "JWT_SECRET": secrets.token_urlsafe(48),  # one secret: a token from one instance works on the other
        "REDIS_URL": redis_server.url,
        "WEB_CONCURRENCY": str(WORKERS),
        "EVENT_GAP_WAIT": "2",  # a hole is passed after 2 s, not 10: the tests stay short
        # A closed socket's record is settled (2 commands) at the end of its grace: the idle window starts after
        # the extra sockets opened to reach every worker are settled.
        "PRESENCE_GRACE": "0.5",
    }
    folders = (tmp_path_factory.mktemp("instance_a"), tmp_path_factory.mktemp("instance_b"))
    try:
        with ExitStack() as stack:
            ports = [port for _, port in stack.enter_context(running_servers(folders, **settings))]
            passwords: set[str] = set()
            a, b = (ProcessApi(f"http://127.0.0.1:{port}", passwords) for port in ports)
            stack.callback(a.close)
            stack.callback(b.close)
            logs = (folders[0] / "server.log", folders[1] / "server.log")
            running = Instances(a, b, redis_server, proxy, logs, store_uri, database)
            # Both workers of each instance answer before any test starts.
            warm_up = running.user()
            asyncio.run(close_all_after(sockets_on_every_worker(running.ws_urls, warm_up, WORKERS)))
            yield running
    finally:
        if proxy is not None:
            proxy.stop()
        client: MongoClient[dict[str, Any]]
        with MongoClient(store_uri) as client:
            client.drop_database(database)


async def idle_window(proxy: CountingProxy, sockets: list[WorkerSocket], settle: float) -> tuple[int, Counter[str]]:
    """With `sockets` open and nobody talking: what the store is sent in IDLE_SECONDS, after `settle` seconds."""
    try:
        await asyncio.sleep(settle)
        before, commands_before = proxy.messages, proxy.commands.copy()
        await asyncio.sleep(IDLE_SECONDS)
        return proxy.messages - before, proxy.commands - commands_before
    finally:
        await close_all(sockets)


async def close_all(sockets: list[WorkerSocket]) -> None:
    for socket in sockets:
        with contextlib.suppress(ConnectionClosed):
            await socket.ws.close()


async def close_all_after(opening: Coroutine[Any, Any, list[WorkerSocket]]) -> None:
    await close_all(await opening)


async def every_worker(instances: Instances, user: TestUser) -> list[WorkerSocket]:
    sockets = await sockets_on_every_worker(instances.ws_urls, user, WORKERS)
    assert len({socket.worker for socket in sockets}) == 2 * WORKERS
    return sockets


def events(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored events among frames (presence and typing come and go as they please)."""
    return [frame for frame in frames if frame["type"] in EVENT_TYPES]


async def receive_events(socket: WorkerSocket, count: int, timeout: float = 15) -> list[dict[str, Any]]:
    """Exactly `count` events on the socket: waits up to `timeout` for them, then 0.5 s more for any extra one."""
    frames: list[dict[str, Any]] = []

    async def read_until(enough: int, wait: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                while len(events(frames)) < enough:
                    frames.append(json.loads(await socket.ws.recv()))

    await read_until(count, timeout)
    await read_until(count + 1, 0.5)
    received = events(frames)
    assert len(received) == count, f"worker {socket.worker} at {socket.url}: {len(received)} events, not {count}"
    return received


def message_id(frame: dict[str, Any]) -> str:
    message_id: str = frame["message"]["id"]
    return message_id


def assert_once_in_order(frames: list[dict[str, Any]], sent_by: dict[str, list[str]]) -> None:
    """Every message sent, once; `seq` increasing; each sender's messages in the order their sends were answered."""
    ids = [message_id(frame) for frame in frames]
    assert len(ids) == len(set(ids)), "a message arrived twice"
    assert set(ids) == {sent for sender in sent_by.values() for sent in sender}
    seqs = [frame["seq"] for frame in frames]
    assert seqs == sorted(set(seqs)), f"seq not increasing: {seqs}"
    for sender, sent in sent_by.items():
        assert [one for one in ids if one in set(sent)] == sent, f"{sender}'s messages out of order"


async def post(http: httpx.AsyncClient, base_url: str, path: str, user: TestUser, body: dict[str, Any]) -> str:
    """A send through one instance; the new message's id. Nothing may answer 500 (or anything but 201)."""
    answer = await http.post(f"{base_url}{path}", json=body, headers=user.headers)
    assert answer.status_code == 201, f"{path} through {base_url}: {answer.status_code} {answer.text}"
    body = answer.json()
    sent: str = body.get("user_message_id") or body["id"]
    return sent


async def redis_subscribers(url: str) -> dict[str, int]:
    """Every pub/sub channel of the Redis at `url` with its number of subscribers (PUBSUB CHANNELS, NUMSUB)."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        channels = await client.pubsub_channels()
        return dict(await client.pubsub_numsub(*channels)) if channels else {}
    finally:
        await client.aclose()


def test_sockets_on_all_four_workers_get_every_event_once_and_in_order(instances: Instances) -> None:
    a = instances.a
    alice, bob, carol, dave = (instances.user() for _ in range(4))
    group_id = create_group(a, alice, members=[bob, carol, dave])  # alice befriends each member
    make_friends(a, dave, bob)
    bases = [api.base_url for api in instances.apis]
    rounds = 8

    async def scenario() -> tuple[dict[str, list[WorkerSocket]], dict[str, dict[str, list[str]]]]:
        sockets = {bob.id: await every_worker(instances, bob), carol.id: await every_worker(instances, carol)}
        # Every worker listens on Redis (the design's pub/sub channel), so what follows goes through it.
        subscribers = await redis_subscribers(instances.redis.url)
        assert max(subscribers.values(), default=0) >= 2 * WORKERS, f"Redis subscribers: {subscribers}"
        # What each receiver must get, per sender, in the order the sends were answered.
        expected: dict[str, dict[str, list[str]]] = {
            bob.id: {"alice": [], "dave": []},
            carol.id: {"alice": [], "dave": []},
        }
        group_path = f"/api/groups/{group_id}/messages"

        async def alice_sends(http: httpx.AsyncClient) -> None:
            for n in range(rounds):
                base = bases[n % 2]
                to_bob = await post(http, base, "/api/user-message", alice, {"to_id": bob.id, "msg": f"a>b {n}"})
                expected[bob.id]["alice"].append(to_bob)
                body = {"to_id": carol.id, "msg": f"a>c {n}"}
                to_carol = await post(http, bases[1 - n % 2], "/api/user-message", alice, body)
                expected[carol.id]["alice"].append(to_carol)
                to_group = await post(http, base, group_path, alice, {"msg": f"a>g {n}"})
                expected[bob.id]["alice"].append(to_group)
                expected[carol.id]["alice"].append(to_group)

        async def dave_sends(http: httpx.AsyncClient) -> None:
            for n in range(rounds):
                base = bases[1 - n % 2]
                to_bob = await post(http, base, "/api/user-message", dave, {"to_id": bob.id, "msg": f"d>b {n}"})
                expected[bob.id]["dave"].append(to_bob)
                to_group = await post(http, bases[n % 2], group_path, dave, {"msg": f"d>g {n}"})
                expected[bob.id]["dave"].append(to_group)
                expected[carol.id]["dave"].append(to_group)

        async with httpx.AsyncClient(timeout=10) as http:
            await asyncio.gather(alice_sends(http), dave_sends(http))
        return sockets, expected

    async def check() -> None:
        sockets, expected = await scenario()
        try:
            for user_id, held in sockets.items():
                count = sum(len(sent) for sent in expected[user_id].values())
                received = await asyncio.gather(*(receive_events(socket, count) for socket in held))
                for frames in received:
                    assert_once_in_order(frames, expected[user_id])
                orders = {tuple(message_id(frame) for frame in frames) for frames in received}
                assert len(orders) == 1, "the sockets of one user saw different orders"
        finally:
            await close_all([socket for held in sockets.values() for socket in held])

    asyncio.run(check())


def test_a_socket_that_moves_to_the_other_instance_resumes_without_gap_or_duplicate(instances: Instances) -> None:
    alice, bob = instances.user(), instances.user()
    make_friends(instances.a, alice, bob)
    a_url, b_url = instances.ws_urls
    bases = [api.base_url for api in instances.apis]

    async def send(http: httpx.AsyncClient, n: int) -> str:
        return await post(http, bases[n % 2], "/api/user-message", alice, {"to_id": bob.id, "msg": f"m{n}"})

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            ws, ready = await open_socket(a_url, bob)
            on_a = WorkerSocket(ws, a_url, ready["worker"], ready)
            before = [await send(http, n) for n in range(2)]
            seen = await receive_events(on_a, 2)
            assert [message_id(frame) for frame in seen] == before
            await ws.close()
            last_seq = seen[-1]["seq"]
            away = [await send(http, n) for n in range(2, 6)]  # sent while bob is gone

            ws, ready = await open_socket(b_url, bob, last_seq=last_seq)
            on_b = WorkerSocket(ws, b_url, ready["worker"], ready)
            live = [await send(http, n) for n in range(6, 8)]
            resumed = await receive_events(on_b, len(away) + len(live))
            assert_once_in_order(resumed, {"alice": away + live})
            assert resumed[0]["seq"] > last_seq
            await ws.close()

            # Back on the first instance from further back: the same events again, in the same order.
            ws, ready = await open_socket(a_url, bob, last_seq=seen[0]["seq"])
            again = await receive_events(WorkerSocket(ws, a_url, ready["worker"], ready), 1 + len(away) + len(live))
            await ws.close()
            assert [message_id(frame) for frame in again] == [before[1], *away, *live]
            assert [frame["seq"] for frame in again[1:]] == [frame["seq"] for frame in resumed]

    asyncio.run(scenario())


def test_logout_and_account_deletion_close_the_users_sockets_on_every_instance(instances: Instances) -> None:
    bob, carol = instances.user(), instances.user()

    async def scenario() -> tuple[list[int | None], list[int | None], float]:
        bobs, carols = await every_worker(instances, bob), await every_worker(instances, carol)
        async with httpx.AsyncClient(timeout=10) as http:
            started = time.monotonic()
            logged_out = await http.post(f"{instances.a.base_url}/api/logout", headers=bob.headers)
            assert logged_out.status_code == 204, logged_out.text
            bob_codes = list(await asyncio.gather(*(close_code(socket.ws) for socket in bobs)))
            deleted = await http.delete(f"{instances.b.base_url}/api/users/{carol.id}", headers=carol.headers)
            assert deleted.status_code == 200, deleted.text
            carol_codes = list(await asyncio.gather(*(close_code(socket.ws) for socket in carols)))
            return bob_codes, carol_codes, time.monotonic() - started

    bob_codes, carol_codes, took = asyncio.run(scenario())
    assert bob_codes == [4401] * 2 * WORKERS
    assert carol_codes == [4401] * 2 * WORKERS
    assert took < 8


def test_typing_reaches_every_worker_through_redis_and_never_the_store(instances: Instances) -> None:
    """Goal 6: ephemeral notices cross instances through Redis alone; no collection of the store ever holds one."""
    alice, bob = instances.user(), instances.user()
    make_friends(instances.a, alice, bob)

    async def scenario() -> list[dict[str, Any]]:
        bobs = await every_worker(instances, bob)
        ws, _ = await open_socket(instances.ws_urls[1], alice)
        try:
            await ws.send(json.dumps({"type": "typing", "to_id": bob.id}))
            return list(await asyncio.gather(*(first_of_type(socket, "typing") for socket in bobs)))
        finally:
            await ws.close()
            await close_all(bobs)

    for frame in asyncio.run(scenario()):
        assert (frame["from_id"], frame["to_id"]) == (alice.id, bob.id)
    client: MongoClient[dict[str, Any]]
    with MongoClient(instances.store_uri) as client:
        database: Database[dict[str, Any]] = client[instances.database]
        for model in DOCUMENT_MODELS:  # every collection the app writes documents to (the log and signals included)
            name = model.Settings.name
            assert database[name].find_one({"type": "typing"}) is None, f"a typing notice stored in {name}"


async def first_of_type(socket: WorkerSocket, kind: str, timeout: float = 5) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            frame: dict[str, Any] = json.loads(await socket.ws.recv())
            if frame["type"] == kind:
                return frame


def test_with_nobody_talking_the_store_sees_almost_no_polling(instances: Instances) -> None:
    """Goal 1 with Redis, measured on the store's socket: sockets open on all four workers, nobody talking."""
    if instances.proxy is None:
        pytest.skip("counted through a proxy in front of the embedded store; MONGODB_URI is an external one")
    proxy = instances.proxy
    alice, bob = instances.user(), instances.user()
    make_friends(instances.a, alice, bob)

    async def scenario() -> tuple[int, Counter[str]]:
        sockets = [*await every_worker(instances, alice), *await every_worker(instances, bob)]
        return await idle_window(proxy, sockets, settle=2)  # logins, presence and socket set-up settle

    sent, commands = asyncio.run(scenario())
    per_process = sent / (2 * WORKERS) / IDLE_SECONDS
    assert per_process <= MAX_IDLE_COMMANDS_PER_SECOND, (
        f"{sent} store commands in {IDLE_SECONDS} s of silence from {2 * WORKERS} workers: {per_process:.1f}/s each; "
        f"{dict(commands.most_common())}"
    )


def test_redis_killed_and_restarted_mid_stream_loses_nothing_and_nothing_answers_500(instances: Instances) -> None:
    alice, bob = instances.user(), instances.user()
    make_friends(instances.a, alice, bob)
    bases = [api.base_url for api in instances.apis]
    total, kill_at, restart_at = 30, 10, 20

    async def scenario() -> None:
        sockets = await every_worker(instances, bob)
        sent: list[str] = []
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                for n in range(total):
                    if n == kill_at:
                        await asyncio.to_thread(instances.redis.kill)
                    if n == restart_at:
                        await asyncio.to_thread(instances.redis.restart)
                    body = {"to_id": bob.id, "msg": f"through it all {n}"}
                    sent.append(await post(http, bases[n % 2], "/api/user-message", alice, body))
                    await asyncio.sleep(0.05)
            received = await asyncio.gather(*(receive_events(socket, total, timeout=30) for socket in sockets))
            for frames in received:
                assert_once_in_order(frames, {"alice": sent})
        finally:
            if not instances.redis.running:
                instances.redis.restart()
            await close_all(sockets)

    asyncio.run(scenario())

    # Redis is back for good: every worker subscribes again, and the instances fan out through it.
    async def after() -> None:
        deadline = time.monotonic() + 15
        while max((await redis_subscribers(instances.redis.url)).values(), default=0) < 2 * WORKERS:
            assert time.monotonic() < deadline, "the workers did not subscribe again to the restarted Redis"
            await asyncio.sleep(0.2)
        sockets = await every_worker(instances, bob)
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                sent = [await post(http, bases[0], "/api/user-message", alice, {"to_id": bob.id, "msg": "after"})]
            for frames in await asyncio.gather(*(receive_events(socket, 1) for socket in sockets)):
                assert_once_in_order(frames, {"alice": sent})
        finally:
            await close_all(sockets)

    asyncio.run(after())


def test_the_test_redis_restarts_on_its_own_port(redis_server: RedisServer) -> None:
    """The helper itself: killed, the port is dead; restarted, the same URL answers again."""
    url = redis_server.url
    redis_server.kill()
    assert not ping(redis_server.port)
    redis_server.restart()
    assert redis_server.url == url
    assert ping(redis_server.port)


def test_without_redis_an_idle_instance_polls_the_store_under_once_a_second_per_process(
    fanout_store: str, tmp_path: Path
) -> None:
    """Goal 1 without Redis (one instance, its processes reading the store): once events stop, each process looks
    at the counters every 2 s at most; with presence upkeep, under one command a second, measured on the store's
    socket."""
    address = embedded_store_address(fanout_store)
    if address is None:
        pytest.skip("counted through a proxy in front of the embedded store; MONGODB_URI is an external one")
    proxy = CountingProxy(*address).start()
    settings = {
        "MONGODB_URI": proxy.uri,
        "MONGODB_DB": f"chat_idle_{secrets.token_hex(4)}",
        "WEB_CONCURRENCY": str(WORKERS),
        "PRESENCE_GRACE": "0.5",
    }
    try:
        with running_server(tmp_path, **settings) as (_, port):
            api = ProcessApi(f"http://127.0.0.1:{port}", set())
            alice, bob = create_user(api), create_user(api)
            make_friends(api, alice, bob)
            url = f"ws://127.0.0.1:{port}/ws"

            async def scenario() -> tuple[int, Counter[str]]:
                sockets = [*await sockets_on_every_worker([url], alice), *await sockets_on_every_worker([url], bob)]
                # The last looks after the set-up's events, the idle pace, closed sockets settled.
                return await idle_window(proxy, sockets, settle=8)

            sent, commands = asyncio.run(scenario())
            api.close()
    finally:
        proxy.stop()
    per_process = sent / WORKERS / IDLE_SECONDS
    assert per_process <= MAX_IDLE_COMMANDS_PER_SECOND, (
        f"{sent} store commands in {IDLE_SECONDS} s of silence from {WORKERS} workers: {per_process:.2f}/s each; "
        f"{dict(commands.most_common())}"
    )
    assert commands["find event_counters"] >= WORKERS * IDLE_SECONDS // 3, "the processes still look for events"


def test_an_event_whose_pub_sub_message_was_lost_is_read_from_the_log(instances: Instances) -> None:
    """An event stored but never published on Redis (a publisher that lost its Redis connection): the next event
    of the partition shows the gap on every worker, which reads the log and delivers both, in order, once."""
    alice, bob = instances.user(), instances.user()
    make_friends(instances.a, alice, bob)
    partition = partition_of(bob.id, 8)  # the instances run on a MongoDB URI: 8 partitions

    async def scenario() -> None:
        sockets = await every_worker(instances, bob)
        try:
            client: MongoClient[dict[str, Any]]
            with MongoClient(instances.store_uri, tz_aware=True) as client:
                database: Database[dict[str, Any]] = client[instances.database]
                counter = database.event_counters.find_one_and_update(
                    {"_id": partition}, {"$inc": {"seq": 1}}, upsert=True, return_document=ReturnDocument.AFTER
                )
                assert counter is not None
                lost = {"id": str(ObjectId()), "from_id": alice.id, "to_id": bob.id, "msg": "never on Redis"}
                database.events.insert_one(
                    new_event_doc(
                        partition, counter["seq"], "message", {"message": lost}, to=[bob.id], transient=False,
                        now=datetime.now(UTC),
                    )
                )  # fmt: skip
            async with httpx.AsyncClient(timeout=10) as http:
                after = await post(
                    http, instances.b.base_url, "/api/user-message", alice, {"to_id": bob.id, "msg": "next"}
                )
            for socket in sockets:
                frames = await receive_events(socket, 2)
                assert [message_id(frame) for frame in frames] == [lost["id"], after]
                assert frames[1]["seq"] == frames[0]["seq"] + 1
        finally:
            await close_all(sockets)

    asyncio.run(scenario())
