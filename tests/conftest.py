"""One store per test session (embedded, or MONGODB_URI with a throwaway database); clean collections per test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from beanie import init_beanie
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import AutoReconnect
from sanic import Sanic
from sanic_testing.reusable import ReusableClient

from chat_api.app import create_app
from chat_api.config import Quota, RateLimits, Settings
from chat_api.http.types import ChatApp
from chat_api.store.documents import DOCUMENT_MODELS
from chat_api.store.embedded import EmbeddedStore, free_loopback_port
from tests.helpers import Api
from tests.redis_server import RedisServer

# Several apps are built in one process (one per settings under test).
Sanic.test_mode = True
FRONTEND_ORIGIN = "http://127.0.0.1:8080"
# The suite registers and logs in from 127.0.0.1 all day: limits on, so every route runs its
# limiter, but far out of reach. tests/test_rate_limits.py builds apps with strict ones.
GENEROUS = Quota(1_000_000, 60)
SUITE_RATE_LIMITS = RateLimits(login=GENEROUS, login_account=GENEROUS, register=GENEROUS, checks=GENEROUS)


@pytest.fixture(scope="session")
def store_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A store of the test session's own, never the developer's data."""
    external = os.environ.get("MONGODB_URI")
    if external:
        yield external
        return
    store = EmbeddedStore(tmp_path_factory.mktemp("store")).start()
    yield store.uri
    store.stop()


@pytest.fixture(scope="session", autouse=True)
def no_store_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every embedded store a test starts must be stopped by the code under test; one that
    is still running at the end is reported and killed, so that none outlives the suite."""
    yield
    base = str(tmp_path_factory.getbasetemp()).encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            command = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"nx-27017" in command and base in command:
            shown = command.replace(b"\0", b" ").decode()
            warnings.warn(f"embedded store left running: {shown}", stacklevel=1)
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "redis: runs a real Redis server (`-m redis` or `-k redis` selects them)")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real `redis-server` of the session's own (a free loopback port, a temporary folder, nothing saved), started
    on first use; `.url`, `.kill()`, `.restart()` (same port). Tests take `clean_redis`, which empties it first."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def clean_redis(redis_server: RedisServer) -> RedisServer:
    """The session's Redis, running (a test before may have killed it) and empty."""
    redis_server.flush()
    return redis_server


@pytest.fixture(scope="session")
def db_name() -> str:
    return f"chat_test_{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def sync_db(store_uri: str, db_name: str) -> Iterator[Database[dict[str, Any]]]:
    client: MongoClient[dict[str, Any]] = MongoClient(store_uri, tz_aware=True)
    yield client[db_name]
    client.drop_database(db_name)
    client.close()


def make_settings(store_uri: str, db_name: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "mongodb_uri": store_uri,
        "mongodb_db": db_name,
        "jwt_secret": secrets.token_urlsafe(48),
        "bcrypt_rounds": 4,  # the cost under test is the code path, not the hash strength
        "cors_origins": (FRONTEND_ORIGIN,),
        "data_dir": data_dir,
        "rate_limits": SUITE_RATE_LIMITS,
        "presence_grace": 0.3,  # presence tests wait for it to pass
        # The suite's store is nx-27017 at a URI: one partition, as the app chooses for its embedded store.
        # tests/test_partitions.py runs the log with several.
        "event_partitions": 1,
        "event_gap_wait": 1.0,  # hole tests wait for it to pass
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def settings(store_uri: str, db_name: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(store_uri, db_name, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def app(settings: Settings) -> ChatApp:
    return create_app(settings)


@pytest.fixture(scope="session")
def api(app: ChatApp) -> Iterator[Api]:
    client = ReusableClient(app, port=free_loopback_port())
    with client:
        yield Api(client)


@pytest.fixture
def app_started(api: Api) -> None:
    """The session app is serving: its documents are bound to the session store (init_beanie)."""


@pytest.fixture(autouse=True)
def clean_collections(request: pytest.FixtureRequest) -> None:
    if "no_store" in request.keywords:
        return
    database: Database[dict[str, Any]] = request.getfixturevalue("sync_db")
    for model in DOCUMENT_MODELS:
        database[model.Settings.name].delete_many({})


OtherApp = Callable[..., AbstractContextManager[ReusableClient]]


async def rebind(app: ChatApp) -> None:
    """Bind the documents to the session app's database again. Its client's monitor did not run while the other
    app's loop did, and may find its server late and pause the pool for a moment: retried briefly."""
    for attempt in range(20):
        try:
            await init_beanie(database=app.ctx.database, document_models=DOCUMENT_MODELS, skip_indexes=True)
            return
        except AutoReconnect:
            if attempt == 19:
                raise
            await asyncio.sleep(0.25)


@pytest.fixture
def other_app(api: Api, app: ChatApp, store_uri: str, db_name: str, tmp_path: Path) -> OtherApp:
    """Run a second app with other settings (`setup` may add routes to it).

    Beanie binds the document classes to one database per process, so afterwards the
    session app's binding is restored in its own event loop.
    """

    @contextmanager
    def run(setup: Callable[[ChatApp], None] | None = None, **overrides: Any) -> Iterator[ReusableClient]:
        other = create_app(make_settings(overrides.pop("mongodb_uri", store_uri), db_name, tmp_path, **overrides))
        if setup is not None:
            setup(other)
        try:
            with ReusableClient(other, port=free_loopback_port()) as client:
                yield client
        finally:
            asyncio.set_event_loop(api.client._loop)
            api.client._run(rebind(app))

    return run
