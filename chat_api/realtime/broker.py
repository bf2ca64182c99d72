"""Redis pub/sub between the processes of every instance: stored events and signals, fanned out once each.

Redis carries, MongoDB keeps: an event is published here only after the store acknowledged it, and a
process that misses one (a lost message, a reconnect, Redis down) finds the hole in its partition's numbers
and reads the log (realtime.hub). Signals (typing, presence) travel only here.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from chat_api.events.service import encode

log = logging.getLogger("chat_api.realtime")

CHANNEL = "chat_api:events"
# A PUBLISH that Redis does not answer within this long is given up: the log has the event.
PUBLISH_TIMEOUT = 1.0
# After a failed PUBLISH, publishing is not tried again for this long: a Redis that is down does not cost every
# request a timeout (the other processes read the store meanwhile, and find the events there).
QUIET_AFTER_FAILURE = 2.0


class Broker:
    """One connection for publishing and one for the subscription, per process."""

    def __init__(self, url: str):
        self.url = url
        self.publisher: Redis = Redis.from_url(
            url, socket_timeout=PUBLISH_TIMEOUT, socket_connect_timeout=PUBLISH_TIMEOUT
        )
        self.failures = 0
        self.skipped = 0
        self.quiet_until = 0.0

    async def publish(self, docs: list[dict[str, Any]]) -> None:
        """Fan out stored events or signals (one PUBLISH for the lot); a failure is logged, never raised."""
        if time.monotonic() < self.quiet_until:
            self.skipped += 1
            return
        try:
            await self.publisher.publish(CHANNEL, encode(docs))
        except (RedisError, OSError) as error:
            self.failures += 1
            self.quiet_until = time.monotonic() + QUIET_AFTER_FAILURE
            log.warning("could not publish to Redis (the log keeps the events): %s", error)

    async def subscribe(self) -> tuple[Redis, PubSub]:
        """A new subscription (its own connection, no read timeout: it waits for messages)."""
        client: Redis = Redis.from_url(self.url, socket_connect_timeout=PUBLISH_TIMEOUT, health_check_interval=30)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(CHANNEL)
        return client, pubsub

    async def close(self) -> None:
        await self.publisher.aclose()
