"""The sweeper's life in each worker: a sweep before the worker serves, then one every SWEEP_INTERVAL seconds."""

from __future__ import annotations

import asyncio
import logging

from pymongo.errors import PyMongoError

from chat_api.accounts import service
from chat_api.http.types import ChatApp
from chat_api.store.client import BACKGROUND

log = logging.getLogger("chat_api.accounts")
# How long a stopping worker waits for a sweep under way (each store command is bounded by STORE_TIMEOUT anyway).
CLOSE_TIMEOUT = 5.0


def setup_sweeper(app: ChatApp) -> None:
    """Register after the store's listeners: the first sweep needs the store."""
    app.before_server_start(start_sweeper)
    app.before_server_stop(stop_sweeper)


async def sweep_once() -> None:
    try:
        finished = await service.sweep()
    except PyMongoError as error:  # the store is away: the next sweep tries again
        log.warning("account deletion sweep failed: %s", error)
        return
    except Exception:  # never the end of the sweeper: the next sweep tries again
        log.exception("account deletion sweep failed")
        return
    if finished:
        log.info("finished %s account deletions cut short", finished)


async def start_sweeper(app: ChatApp) -> None:
    # Awaited: a worker that starts after a crash finishes what it can before serving.
    await sweep_once()
    app.ctx.sweeper = asyncio.create_task(_forever(), name="account-deletion-sweeper")


async def _forever() -> None:
    BACKGROUND.set(True)  # its commands are no request's (the tests' per-request counts leave them out)
    while True:
        await asyncio.sleep(service.SWEEP_INTERVAL)
        await sweep_once()


async def stop_sweeper(app: ChatApp) -> None:
    task: asyncio.Task[None] | None = getattr(app.ctx, "sweeper", None)
    if task is not None:
        task.cancel()
        # Waited, never awaited: the task's end (cancelled, or a failure already logged) raises nothing here.
        await asyncio.wait([task], timeout=CLOSE_TIMEOUT)
