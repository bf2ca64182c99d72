"""The PyMongo client the app and the scripts use: its options, Beanie's binding, and safe labels for logs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from beanie import init_beanie
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.monitoring import CommandListener

from chat_api.config import Settings
from chat_api.store.documents import DOCUMENT_MODELS
from chat_api.store.embedded import STORE_FILE

CLIENT_OPTIONS: dict[str, Any] = {"tz_aware": True, "appname": "chat_api"}
# True in the background tasks of a process (the real-time hub's feed and upkeep): command listeners that
# count a request's store commands leave theirs out. The tasks share the process's one client.
BACKGROUND: ContextVar[bool] = ContextVar("chat_api_background", default=False)
# Without a per-operation timeout (the scripts: bulk loads and index builds may take long),
# every wait is still bounded.
UNTIMED_OPTIONS: dict[str, Any] = {"serverSelectionTimeoutMS": 5000, "connectTimeoutMS": 5000, "socketTimeoutMS": 20000}
# nx-27017 maps a write concern onto SQLite's `synchronous` pragma (its default in WAL mode is
# NORMAL). `j: true` makes it FULL: a write is fsynced to the WAL before it is acknowledged, as
# a journaled write on MongoDB. Only for the embedded store: on MongoDB the deployment's own
# default (w: majority, journaled, on Atlas) stays in force.
EMBEDDED_WRITE_CONCERN: dict[str, Any] = {"journal": True}
# Bulk loads (the seed) commit document by document on nx-27017; NORMAL is about three times
# faster there and still survives a crash of any process, only not a power cut.
EMBEDDED_BULK_WRITE_CONCERN: dict[str, Any] = {"w": 1}


def describe_uri(uri: str) -> str:
    """The scheme and hosts of a MongoDB URI, without user name or password, for logs.

    Parsed by hand: PyMongo's parser resolves `mongodb+srv` names through DNS.
    """
    scheme, separator, rest = uri.partition("://")
    if not separator:
        return "mongodb (unparsable URI)"
    hosts = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{hosts}"


def client_options(
    timeout: float | None,
    write_concern: Mapping[str, Any] | None = None,
    pool_size: int | None = None,
    listeners: Sequence[CommandListener] = (),
) -> dict[str, Any]:
    """PyMongo options; `timeout` (seconds) bounds each operation as a whole.

    With a timeout, every step of an operation (server selection, connection checkout and
    handshake, the round trip) shares one deadline, so a store that is down, unreachable or
    hung costs a request at most that long, and PyMongo reconnects by itself when it is back.
    """
    options = {**CLIENT_OPTIONS, **(write_concern or {})}
    if pool_size is not None:
        options["maxPoolSize"] = pool_size
    if listeners:
        # Beside any CLIENT_OPTIONS has (the tests' and the benchmark's counters).
        options["event_listeners"] = [*options.get("event_listeners", ()), *listeners]
    if timeout is None:
        return {**options, **UNTIMED_OPTIONS}
    timeout_ms = round(timeout * 1000)
    # Server selection and the monitor's connection attempts would otherwise wait longer
    # than the operation may (30 s and 20 s by default).
    return {**options, "timeoutMS": timeout_ms, "serverSelectionTimeoutMS": timeout_ms, "connectTimeoutMS": timeout_ms}


def new_client(
    uri: str,
    timeout: float | None = None,
    write_concern: Mapping[str, Any] | None = None,
    pool_size: int | None = None,
    listeners: Sequence[CommandListener] = (),
) -> AsyncMongoClient[dict[str, Any]]:
    return AsyncMongoClient(uri, **client_options(timeout, write_concern, pool_size, listeners))


async def open_database(
    uri: str,
    db_name: str,
    *,
    operation_timeout: float | None = None,
    write_concern: Mapping[str, Any] | None = None,
    pool_size: int | None = None,
    listeners: Sequence[CommandListener] = (),
) -> AsyncDatabase[dict[str, Any]]:
    """Connect and bind the Beanie documents; indexes are managed by chat_api.store.indexes."""
    client = new_client(uri, operation_timeout, write_concern, pool_size, listeners)
    database = client[db_name]
    await init_beanie(database=database, document_models=DOCUMENT_MODELS, skip_indexes=True)
    return database


def store_label(settings: Settings, uri: str) -> str:
    if settings.store_kind == "embedded":
        return f"embedded nx-27017 at {uri} (data in {settings.data_dir / STORE_FILE})"
    return f"MongoDB at {describe_uri(uri)}, database {settings.mongodb_db!r}"
