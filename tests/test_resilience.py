"""The store goes away and comes back, processes are killed mid-write, the app is stopped: nothing hangs or is lost."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import (
    AutoReconnect,
    ExecutionTimeout,
    NetworkTimeout,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
    WTimeoutError,
)
from sanic import Request
from sanic.response import HTTPResponse
from sanic_testing.reusable import ReusableClient

from chat_api.config import DEFAULT_STORE_TIMEOUT
from chat_api.http.types import ChatApp
from chat_api.store.client import EMBEDDED_WRITE_CONCERN, client_options
from chat_api.store.embedded import EmbeddedStore, free_loopback_port, pid_alive
from chat_api.users.models import User
from tests.conftest import OtherApp
from tests.factories import create_user, log_in, user_payload
from tests.helpers import GENEROUS_LIMITS_ENV, Api, stop_server, subprocess_env, wait_for_health

# The promise: a request answers within this long even when the store is down or hung.
ANSWER_BOUND = 5.0
STORE_LOGGER = "chat_api.store"


def registry(data_dir: Path) -> dict[str, Any]:
    state: dict[str, Any] = json.loads((data_dir / "nx-27017.json").read_text())
    return state


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def store_processes(folder: Path) -> list[int]:
    """Every nx-27017 process serving a file in `folder`, whoever started it."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            command = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"nx-27017" in command and str(folder).encode() in command and pid_alive(int(proc.name)):
            found.append(int(proc.name))
    return found


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def store_log() -> Iterator[list[str]]:
    """The messages of the store's logger (the app's loggers do not propagate to pytest's)."""
    handler = Collected()
    logger = logging.getLogger(STORE_LOGGER)
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


@contextmanager
def holding_store_lock(folder: Path) -> Iterator[None]:
    """Hold the registry lock, so that the supervisor cannot start the store again meanwhile."""
    with open(folder / "nx-27017.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def send_all(client: ReusableClient, requests: list[tuple[str, str, dict[str, Any]]]) -> list[httpx.Response]:
    """Send requests at the same time, each on its own connection, with a generous client timeout:
    how long each took is measured (`elapsed`), not cut short."""

    async def send() -> list[httpx.Response]:
        base = f"http://{client.host}:{client.port}"
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
            return list(await asyncio.gather(*(http.request(method, path, **kw) for method, path, kw in requests)))

    responses: list[httpx.Response] = client._loop.run_until_complete(send())
    return responses


def traffic(user_id: str, token: str, chat_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    """One request of every kind: reads, writes, a login (bcrypt and two store operations), health."""
    auth = {"headers": {"Authorization": token}}
    return [
        ("GET", "/healthz", {}),
        ("POST", "/api/register", {"json": user_payload()}),
        ("POST", "/api/login", {"json": {"chat_id": chat_id, "password": PASSWORD}}),
        ("GET", "/api/getUser", auth),
        ("GET", "/api/users", auth),
        ("GET", f"/api/users/{user_id}", auth),
        ("PUT", f"/api/users/{user_id}", {**auth, "json": {"personality": "still here"}}),
        ("GET", "/api/users/checkChatId/424242", {}),
        ("GET", "/api/users/checkEmail/nobody@example.com", {}),
    ]


PASSWORD = "resilient-pw"
# PASSWORD hashed at bcrypt cost 14: checking it takes more than a second here (a login with it
# outlasts a short store timeout, and stays in flight long enough to be caught by a shutdown).
SLOW_HASH = "$2b$14$4//L9DAXb.x.mwjAyz6D8uJcxLMQt6HGN.JcxjkCBOCd0MIIZfZUO"


def assert_prompt_503s(responses: list[httpx.Response]) -> None:
    for response in responses:
        where = f"{response.request.method} {response.request.url.path}"
        assert response.status_code == 503, f"{where}: {response.status_code} {response.text}"
        assert isinstance(response.json()["message"], str), where
        assert response.elapsed.total_seconds() <= ANSWER_BOUND, f"{where} took {response.elapsed}"


def assert_all_succeed(responses: list[httpx.Response]) -> None:
    for response in responses:
        where = f"{response.request.method} {response.request.url.path}"
        assert response.status_code in {200, 201, 204}, f"{where}: {response.status_code} {response.text}"


def healthy(api: Api) -> bool:
    status: int = api.get("/healthz", timeout=30).status
    return status == 200


def test_a_hung_store_gives_prompt_503s_and_service_resumes_when_it_wakes(other_app: OtherApp, tmp_path: Path) -> None:
    """SIGSTOP: the store accepts connections and never answers, the worst case for a client."""
    with other_app(mongodb_uri=None) as client:
        api = Api(client)
        user = create_user(api, password=PASSWORD)
        assert client.app.ctx.settings.store_timeout == DEFAULT_STORE_TIMEOUT
        store_pid = registry(tmp_path)["pid"]
        os.kill(store_pid, signal.SIGSTOP)
        try:
            answers = send_all(client, traffic(user.id, user.token, user.chat_id))
        finally:
            os.kill(store_pid, signal.SIGCONT)
        assert_prompt_503s(answers)

        wait_until(lambda: healthy(api), 30, "healthz is 200 again after SIGCONT")
        assert_all_succeed(send_all(client, traffic(user.id, user.token, user.chat_id)))
        # the same store process throughout: a hung store is waited out, not replaced
        assert registry(tmp_path)["pid"] == store_pid


def test_a_stopped_store_gives_prompt_503s_and_is_started_again_on_its_port_and_data(
    other_app: OtherApp, tmp_path: Path
) -> None:
    with store_log() as messages, other_app(mongodb_uri=None) as client:
        api = Api(client)
        user = create_user(api, password=PASSWORD)
        before = registry(tmp_path)
        with holding_store_lock(tmp_path):
            os.kill(before["pid"], signal.SIGTERM)  # stopped by someone else than the app
            wait_until(lambda: not pid_alive(before["pid"]), 15, "the store exits on SIGTERM")
            answers = send_all(client, traffic(user.id, user.token, user.chat_id))
        assert_prompt_503s(answers)

        wait_until(lambda: registry(tmp_path)["pid"] != before["pid"], 30, "the supervisor starts the store again")
        after = registry(tmp_path)
        assert after["port"] == before["port"]
        assert pid_alive(after["pid"])
        wait_until(lambda: healthy(api), 30, "healthz is 200 again")
        assert log_in(api, user.chat_id, PASSWORD)  # the data is the same
        assert_all_succeed(send_all(client, traffic(user.id, user.token, user.chat_id)))
    assert any(f"(pid {before['pid']}, port {before['port']}) has exited" in m for m in messages), messages
    assert any(f"running again (pid {after['pid']})" in m for m in messages), messages
    assert not store_processes(tmp_path), "the app's stop leaves no store behind"


def test_a_store_whose_port_is_taken_is_retried_on_that_port_with_growing_delays(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path).start()
    store.supervise()
    try:
        client: MongoClient[dict[str, Any]] = MongoClient(store.uri, serverSelectionTimeoutMS=2000)
        client.chat.notes.insert_one({"kept": True})
        client.close()
        first_pid, port = store.pid, store.port
        assert first_pid is not None
        with store_log() as messages:
            with holding_store_lock(tmp_path):
                os.kill(first_pid, signal.SIGKILL)
                wait_until(lambda: not pid_alive(first_pid), 15, "the store dies")
                squatter = socket.socket()
                squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the dead server's TIME_WAITs
                squatter.bind(("127.0.0.1", port))
                squatter.listen()

            def failures() -> list[str]:
                return [m for m in messages if m.startswith("could not start the embedded store again")]

            try:
                wait_until(lambda: len(failures()) >= 2, 30, "two failed attempts")
            finally:
                squatter.close()
            wait_until(lambda: store.pid != first_pid and store._server_running(), 30, "started again once free")
        assert f"port {port} is taken by another process" in failures()[0]
        delays = [float(m.rsplit("next attempt in ", 1)[1].split()[0]) for m in failures()]
        assert delays[:2] == [1.0, 2.0]  # 0.5 s before the first attempt, then doubling
        assert registry(tmp_path)["port"] == port
        client = MongoClient(store.uri, serverSelectionTimeoutMS=5000)
        assert client.chat.notes.find_one({"kept": True}) is not None
        client.close()
    finally:
        store.stop()
    assert not store_processes(tmp_path)
    assert not (tmp_path / "nx-27017.json").exists()


def test_a_deliberate_stop_is_not_undone_by_the_supervisor(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path).start()
    store.supervise()
    pid = store.pid
    assert pid is not None
    store.stop()
    # long enough for the supervisor to notice and restart it, were it still watching
    time.sleep(EmbeddedStore.WATCH_INTERVAL + EmbeddedStore.RESTART_DELAY_MIN + 1.5)
    assert not pid_alive(pid)
    assert not store_processes(tmp_path)
    assert not (tmp_path / "nx-27017.json").exists()


def test_acknowledged_writes_survive_sigkill_of_the_store(tmp_path: Path) -> None:
    """With the write concern the app sets on the embedded store, and its WAL journal."""
    first = EmbeddedStore(tmp_path).start()
    client: MongoClient[dict[str, Any]] = MongoClient(first.uri, **client_options(5, EMBEDDED_WRITE_CONCERN))
    for n in range(200):
        client.chat.notes.insert_one({"n": n})  # each acknowledged before the next is sent
    client.close()
    assert first.pid is not None
    os.kill(first.pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(first.pid or 0), 15, "the store dies")

    # Its user is alive, so the store comes back on the same port (its clients know no other).
    second = EmbeddedStore(tmp_path).start()
    try:
        assert second.port == first.port
        client = MongoClient(second.uri, serverSelectionTimeoutMS=5000)
        assert sorted(doc["n"] for doc in client.chat.notes.find({})) == list(range(200))
        client.close()
        with contextlib.closing(sqlite3.connect(second.db_file)) as db:  # WAL allows a reader beside the server
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        first.stop()
        second.stop()
    assert not store_processes(tmp_path)


def test_slow_password_checks_are_not_cut_by_the_store_timeout(
    other_app: OtherApp, sync_db: Database[dict[str, Any]]
) -> None:
    """The timeout bounds each store operation, not a request: a login whose bcrypt check takes
    longer than the store timeout (cost 14: over a second here) still succeeds."""
    with other_app(store_timeout=1.0) as client:
        api = Api(client)
        user = create_user(api, login=False, password=PASSWORD)
        sync_db[User.Settings.name].update_one({"_id": ObjectId(user.id)}, {"$set": {"password": SLOW_HASH}})
        assert log_in(api, user.chat_id, PASSWORD)


@pytest.mark.parametrize(
    "error",
    [
        ExecutionTimeout("operation exceeded time limit", 50),  # server-side maxTimeMS, from timeoutMS
        WTimeoutError("waiting for replication timed out", 64),
        NetworkTimeout("timed out"),
        ServerSelectionTimeoutError("no servers"),
        AutoReconnect("connection reset"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_every_kind_of_store_timeout_or_disconnection_is_a_503(other_app: OtherApp, error: PyMongoError) -> None:
    """The embedded store cannot produce server-side timeouts; MongoDB can (timeoutMS sends maxTimeMS)."""

    def add_route(app: ChatApp) -> None:
        async def fail(request: Request) -> HTTPResponse:
            raise error

        app.add_route(fail, "/test/fail")

    with other_app(add_route) as client:
        _, response = client.get("/test/fail")
    assert response.status == 503
    assert response.json == {"message": "The data store is unavailable, try again shortly"}


def test_other_store_errors_stay_500(other_app: OtherApp) -> None:
    def add_route(app: ChatApp) -> None:
        async def fail(request: Request) -> HTTPResponse:
            raise OperationFailure("unknown operator: $foo", 2)

        app.add_route(fail, "/test/fail")

    with other_app(add_route) as client:
        _, response = client.get("/test/fail")
    assert response.status == 500


# Process level: `python -m chat_api` as deployed, killed and stopped for real.


@dataclass
class Served:
    process: subprocess.Popen[str]
    base: str
    data_dir: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text()


@contextmanager
def serving(tmp_path: Path, data_dir: Path, **env: str) -> Iterator[Served]:
    """`python -m chat_api` in its own process group, its output in a file (a pipe nobody reads
    would fill up and block it); stopped with SIGTERM to the main process if still running."""
    port = free_loopback_port()
    log = tmp_path / f"api-{port}.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "chat_api"],
            cwd=tmp_path,
            env=subprocess_env(data_dir, PORT=str(port), **{**GENEROUS_LIMITS_ENV, **env}),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    served = Served(process, f"http://127.0.0.1:{port}", data_dir, log)
    workers = int(env.get("WEB_CONCURRENCY", "1"))
    try:
        wait_for_health(served.base, timeout=60, process=process)
        # Every worker, not just the first: Sanic's main process hangs on a SIGTERM that comes
        # before all workers have started, and a worker fails if the store dies while it starts.
        wait_until(lambda: served.output().count("Worker ready") == workers, 60, "all workers ready")
        yield served
    finally:
        stop_server(process, timeout=60)


@dataclass
class Outcome:
    payload: dict[str, Any]
    status: int | None  # None: no answer (the connection failed)
    body: Any


def registration_burst(base: str, count: int, *, after: int, then: Callable[[], None]) -> list[Outcome]:
    """Register `count` users over 12 connections at once; call `then` once `after` have got 201."""

    async def burst() -> list[Outcome]:
        pending = [user_payload() for _ in range(count)]
        outcomes: list[Outcome] = []
        created = 0
        fired = False
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:

            async def client() -> None:
                nonlocal created, fired
                while pending:
                    payload = pending.pop()
                    try:
                        response = await http.post("/api/register", json=payload)
                    except httpx.TransportError:
                        outcomes.append(Outcome(payload, None, None))
                        continue
                    outcomes.append(Outcome(payload, response.status_code, response.json()))
                    created += response.status_code == 201
                    if created >= after and not fired:
                        fired = True
                        then()

            await asyncio.gather(*(client() for _ in range(12)))
        assert fired, "the burst ended before the kill"
        return outcomes

    return asyncio.run(burst())


REQUIRED_FIELDS = {
    "chat_id": int,
    "email": str,
    "username": str,
    "password": str,
    "register_at": datetime,
    "birthday": datetime,
    "sex": str,
    "flag": str,
    "token_version": int,
}


def assert_every_201_stored_once_and_whole(uri: str, outcomes: list[Outcome]) -> int:
    created = [outcome for outcome in outcomes if outcome.status == 201]
    client: MongoClient[dict[str, Any]] = MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=10000)
    try:
        users = client.chat[User.Settings.name]
        for outcome in created:
            stored = users.find_one({"_id": ObjectId(outcome.body["user_id"])})
            assert stored is not None, f"acknowledged user {outcome.body['user_id']} is missing"
            assert stored["email"] == outcome.payload["email"]
            assert stored["chat_id"] == outcome.payload["chat_id"]
            assert users.count_documents({"email": {"$eq": outcome.payload["email"]}}) == 1
        documents = list(users.find({}))
        for document in documents:  # including those whose request got no answer
            for name, kind in REQUIRED_FIELDS.items():
                assert isinstance(document.get(name), kind), f"half-written user: {name} in {document['_id']}"
            assert document["password"].startswith("$2b$")
            assert len(document["password"]) == 60
    finally:
        client.close()
    return len(documents)


@pytest.mark.slow
def test_registrations_acknowledged_before_the_api_is_killed_are_all_stored(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with serving(tmp_path, data_dir, WEB_CONCURRENCY="2") as served:
        # SIGKILL to the whole process group: main process, Sanic's manager and the workers
        # (a worker whose main process is gone would go on serving). The store has its own
        # session, so it lives on, as after a crash.
        kill = lambda: os.killpg(served.process.pid, signal.SIGKILL)  # noqa: E731
        outcomes = registration_burst(served.base, 120, after=30, then=kill)
        served.process.wait(timeout=30)
    assert all(outcome.status in {201, None} for outcome in outcomes), {o.status for o in outcomes}
    assert any(outcome.status is None for outcome in outcomes), "the kill came after the burst"

    with serving(tmp_path, data_dir) as again:
        assert "took over the embedded store" in again.output()
        stored = assert_every_201_stored_once_and_whole(f"mongodb://127.0.0.1:{registry(data_dir)['port']}/", outcomes)
        assert stored >= sum(outcome.status == 201 for outcome in outcomes)
    assert not store_processes(data_dir)


@pytest.mark.slow
def test_registrations_acknowledged_before_the_store_is_killed_are_all_stored(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with serving(tmp_path, data_dir, WEB_CONCURRENCY="2") as served:
        before = registry(data_dir)
        kill = lambda: os.kill(before["pid"], signal.SIGKILL)  # noqa: E731
        outcomes = registration_burst(served.base, 120, after=30, then=kill)
        # every request got an answer: created, or 503 while the store was away
        assert {outcome.status for outcome in outcomes} <= {201, 503}
        assert served.process.poll() is None

        def registers() -> bool:
            return httpx.post(f"{served.base}/api/register", json=user_payload(), timeout=30).status_code == 201

        wait_until(registers, 30, "service resumes by itself")
        # The supervisor records the new server once it answers: a request may get through just before that.
        wait_until(lambda: registry(data_dir)["pid"] != before["pid"], 10, "the new store is in the registry")
        after = registry(data_dir)
        assert (after["port"], after["users"]) == (before["port"], before["users"])
        assert after["pid"] != before["pid"]
        # read from the store started again, i.e. from what the killed one left on disk
        assert_every_201_stored_once_and_whole(f"mongodb://127.0.0.1:{after['port']}/", outcomes)
        assert "has been killed by SIGKILL; starting it again" in served.output()
    assert served.process.returncode == 0
    assert not store_processes(data_dir)


@pytest.mark.slow
@pytest.mark.parametrize("to", ["main process", "every process"])
def test_sigterm_lets_requests_in_flight_finish_refuses_new_ones_and_stops_the_store(tmp_path: Path, to: str) -> None:
    """`kill <pid>`, and Heroku, which sends SIGTERM to every process of the dyno."""
    data_dir = tmp_path / "data"
    payload = user_payload(password=PASSWORD)
    with serving(tmp_path, data_dir, WEB_CONCURRENCY="2") as served:
        response = httpx.post(f"{served.base}/api/register", json=payload, timeout=30)
        assert response.status_code == 201
        store = registry(data_dir)
        client: MongoClient[dict[str, Any]] = MongoClient(f"mongodb://127.0.0.1:{store['port']}/")
        user_id = ObjectId(response.json()["user_id"])
        client.chat[User.Settings.name].update_one({"_id": user_id}, {"$set": {"password": SLOW_HASH}})
        client.close()

        async def shut_down_during_logins() -> tuple[list[httpx.Response], bool]:
            login = {"chat_id": payload["chat_id"], "password": PASSWORD}
            async with httpx.AsyncClient(base_url=served.base, timeout=60) as http:
                logins = [asyncio.create_task(http.post("/api/login", json=login)) for _ in range(2)]
                await asyncio.sleep(0.3)
                assert not any(task.done() for task in logins), "the logins should still be checking the password"
                if to == "main process":
                    os.kill(served.process.pid, signal.SIGTERM)
                else:
                    os.killpg(served.process.pid, signal.SIGTERM)
                refused_while_stopping = await refused_soon(served)
                return list(await asyncio.gather(*logins)), refused_while_stopping

        responses, refused_while_stopping = asyncio.run(shut_down_during_logins())
        served.process.wait(timeout=60)
    assert [response.status_code for response in responses] == [200, 200], served.output()
    assert refused_while_stopping, "new connections were not refused while the app was stopping"
    assert served.process.returncode == 0, served.output()
    assert "embedded store stopped" in served.output()
    assert not pid_alive(store["pid"])
    assert not (data_dir / "nx-27017.json").exists()
    assert not store_processes(data_dir)


async def refused_soon(served: Served) -> bool:
    """Whether a new connection is refused within a few seconds, while the app is still running."""
    deadline = time.monotonic() + 5
    async with httpx.AsyncClient(base_url=served.base, timeout=1) as http:
        while time.monotonic() < deadline:
            try:
                await http.get("/healthz", headers={"Connection": "close"})
            except httpx.ConnectError:
                return served.process.poll() is None
            except httpx.HTTPError:
                pass  # accepted but not served: keep trying, the process has not exited yet
            await asyncio.sleep(0.05)
    return False
