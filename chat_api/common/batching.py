"""Reads by key that arrive in the same turn of the event loop, answered together by one batched read.

Under load, several requests reach the same read in one turn of the loop (the socket events of one poll run
together). Each would cost the store a command and the app a driver round trip, the largest part of a simple
read's CPU (docs/performance.md, "CPU per answer"); batched, they cost one. A request alone waits for nothing:
its read goes out at the end of the turn it began in. Every read in a batch is sent after each of its requests
arrived, so an answer is never older than one read of its own would have been.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Batcher(Generic[K, V]):
    """`await batcher.get(key)`: the value `read_many` finds for `key` (None if none), keys of one turn read together.

    `read_many` gets the distinct keys of a turn, at most `max_batch` at a time, and answers a mapping of those it
    found. If it raises, every request of its batch gets the error.
    """

    def __init__(self, read_many: Callable[[list[K]], Awaitable[Mapping[K, V]]], max_batch: int = 100) -> None:
        self._read_many = read_many
        self.max_batch = max_batch
        # Per event loop: the test suite runs several apps, each on a loop of its own.
        self._pending: dict[asyncio.AbstractEventLoop, dict[K, list[asyncio.Future[V | None]]]] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def get(self, key: K) -> V | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V | None] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = {}
            # An empty context: the batch belongs to no one request (its request id, its deadline).
            loop.call_soon(self._flush, loop, context=contextvars.Context())
        pending.setdefault(key, []).append(future)
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        pending = self._pending.pop(loop)
        keys = list(pending)
        for start in range(0, len(keys), self.max_batch):
            batch = {key: pending[key] for key in keys[start : start + self.max_batch]}
            task = loop.create_task(self._answer(batch))
            self._running.add(task)  # the loop keeps only a weak reference to a task
            task.add_done_callback(self._running.discard)

    async def _answer(self, batch: dict[K, list[asyncio.Future[V | None]]]) -> None:
        try:
            found = await self._read_many(list(batch))
        except BaseException as error:
            for futures in batch.values():
                for future in futures:
                    if future.done():  # a request that was cancelled meanwhile
                        continue
                    if isinstance(error, asyncio.CancelledError):
                        future.cancel()
                    else:
                        future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for key, futures in batch.items():
            value = found.get(key)
            for future in futures:
                if not future.done():
                    future.set_result(value)
