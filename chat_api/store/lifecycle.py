"""The store's life in the app: the embedded server in the main process, a client and indexes per worker."""

from __future__ import annotations

import logging
import multiprocessing
import os

import pymongo
from pymongo.errors import ConnectionFailure

from chat_api.config import Settings
from chat_api.http.types import ChatApp
from chat_api.security import PasswordHasher, hashing_executor
from chat_api.store.client import EMBEDDED_WRITE_CONCERN, open_database, store_label
from chat_api.store.embedded import EmbeddedStore
from chat_api.store.indexes import create_indexes

log = logging.getLogger("chat_api")
# Creating a missing index on a large collection at start-up may take far longer than one
# request's store operation may.
INDEX_BUILD_TIMEOUT = 600.0


def setup_store(app: ChatApp) -> None:
    """Register the listeners: the shared embedded store in the main process, a client in each worker."""
    app.main_process_start(start_shared_store)
    app.main_process_stop(stop_shared_store)
    app.before_server_start(connect_store)
    app.after_server_stop(disconnect_store)


async def start_shared_store(app: ChatApp) -> None:
    """In the main process, so that several workers share one embedded store."""
    settings: Settings = app.ctx.settings
    if settings.store_kind != "embedded":
        log.info("store: %s", store_label(settings, settings.mongodb_uri or ""))
        return
    try:
        store = EmbeddedStore(settings.data_dir).start()
    except Exception:
        # Sanic reports a failing main-process listener only as an OS error; say what failed.
        log.exception("could not start the embedded store")
        raise
    store.supervise()
    app.ctx.embedded_store = store
    app.shared_ctx.store_port = multiprocessing.Value("i", store.port)
    log.info("store: %s", store_label(settings, store.uri))


async def stop_shared_store(app: ChatApp) -> None:
    store: EmbeddedStore | None = getattr(app.ctx, "embedded_store", None)
    if store is not None:
        store.stop()
        log.info("embedded store stopped")


async def connect_store(app: ChatApp) -> None:
    settings: Settings = app.ctx.settings
    uri = settings.mongodb_uri
    if uri is None:
        shared_port = getattr(app.shared_ctx, "store_port", None)
        if shared_port is not None:
            uri = f"mongodb://127.0.0.1:{shared_port.value}/"
        else:
            # Run without a main process (single-process mode): own the store here.
            store = EmbeddedStore(settings.data_dir).start()
            store.supervise()
            app.ctx.worker_store = store
            uri = store.uri
            log.info("store: %s", store_label(settings, uri))
    write_concern = EMBEDDED_WRITE_CONCERN if settings.store_kind == "embedded" else None
    try:
        # The process's one client: requests and the real-time hub share its pool (docs/scaling.md, "Connections").
        database = await open_database(
            uri,
            settings.mongodb_db,
            operation_timeout=settings.store_timeout,
            write_concern=write_concern,
            pool_size=settings.store_pool_size,
            # Other packages' command listeners (the metrics', when on: chat_api.metrics.routes).
            listeners=getattr(app.ctx, "command_listeners", ()),
        )
        # Idempotent, and the unique indexes are what make registration race-free, so a
        # database that has never seen `scripts.indexes create` still gets them.
        with pymongo.timeout(INDEX_BUILD_TIMEOUT):
            created = await create_indexes(database)
        for index in created:
            log.info("created index %s", index)
    except ConnectionFailure as error:
        log.error("cannot reach the store at %s: %s", store_label(settings, uri), error)
        raise
    app.ctx.database = database
    app.ctx.hasher = PasswordHasher(settings.bcrypt_rounds, hashing_executor(os.cpu_count() or 1))


async def disconnect_store(app: ChatApp) -> None:
    database = getattr(app.ctx, "database", None)
    if database is not None:
        await database.client.close()
        app.ctx.hasher.executor.shutdown(wait=False)
    store: EmbeddedStore | None = getattr(app.ctx, "worker_store", None)
    if store is not None:
        store.stop()
