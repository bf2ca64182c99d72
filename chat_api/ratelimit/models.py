"""The rate-limit counter as stored in MongoDB: one document per budget and window, expired by a TTL index."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from beanie import Document
from pymongo import IndexModel

from chat_api.store.keys import ascending


class RateLimitCounter(Document):
    # "<policy>:<window start, epoch seconds>:<subject>": a new window is a new document, so the
    # counting never depends on when (or whether) the store deletes the old ones.
    id: str  # type: ignore[assignment]  # a string key, not Beanie's ObjectId
    used: int = 0  # units spent in this window
    # When the window ends; the TTL index deletes the document then (MongoDB's monitor runs
    # every 60 s; nx-27017 was seen deleting within a few seconds).
    expires_at: datetime

    class Settings:
        name = "rate_limits"
        indexes: ClassVar[list[IndexModel]] = [ascending("expires_at", name="expires_at_ttl", expireAfterSeconds=0)]
