"""The scripts' way to the store: the same settings and store as the app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from chat_api.config import Settings
from chat_api.store.client import EMBEDDED_BULK_WRITE_CONCERN, open_database, store_label
from chat_api.store.embedded import EmbeddedStore


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[AsyncDatabase[Any]]:
    """MONGODB_URI if set; else the embedded store of DATA_DIR (joined if the app runs it)."""
    store = None
    uri = settings.mongodb_uri
    if uri is None:
        store = EmbeddedStore(settings.data_dir).start()
        uri = store.uri
    print(f"store: {store_label(settings, uri)}")
    # No per-operation timeout: a bulk insert or an index build may rightly take long.
    write_concern = EMBEDDED_BULK_WRITE_CONCERN if store is not None else None
    db = await open_database(uri, settings.mongodb_db, write_concern=write_concern)
    try:
        yield db
    finally:
        await db.client.close()
        if store is not None:
            store.stop()
