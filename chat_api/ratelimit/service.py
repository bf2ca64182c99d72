"""Fixed-window budgets counted in the store, shared by every worker and instance; no HTTP here."""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pymongo import ReturnDocument, UpdateOne

from chat_api.config import Quota
from chat_api.ratelimit.models import RateLimitCounter


@dataclass(frozen=True)
class Policy:
    """A named budget, as announced in the `RateLimit-Policy` header."""

    name: str
    quota: Quota


@dataclass(frozen=True)
class Window:
    start: int  # epoch seconds
    end: int


@dataclass(frozen=True)
class Usage:
    """A budget after this request's unit was counted."""

    policy: Policy
    key: str
    used: int  # units spent in the window, this request's included
    window_end: float  # epoch seconds

    @property
    def refused(self) -> bool:
        # The request is served while the budget had a unit left before it; so a request that
        # needs one unit gets through even when failures, which cost more, would not.
        return self.used - 1 >= self.policy.quota.limit

    @property
    def remaining(self) -> int:
        return max(0, self.policy.quota.limit - self.used)

    def retry_after_ms(self, now: float | None = None) -> int:
        return max(1, math.ceil((self.window_end - (time.time() if now is None else now)) * 1000))

    def reset_seconds(self, now: float | None = None) -> int:
        return math.ceil(self.retry_after_ms(now) / 1000)


def window_of(policy: Policy, subject: str, now: float) -> Window:
    """The fixed window containing `now` for this budget.

    Each budget's windows are shifted by a stable offset derived from its key, so clients refused
    at the same moment are not all told to come back in the same second (draft-ietf-httpapi-
    ratelimit-headers-11, section 8.5). crc32, not hash(): every process must agree.
    """
    length = policy.quota.window
    offset = zlib.crc32(f"{policy.name}:{subject}".encode()) % length
    start = int((now - offset) // length) * length + offset
    return Window(start, start + length)


async def count(policy: Policy, subject: str, now: float | None = None) -> Usage:
    """Spend one unit of `subject`'s budget atomically and return the budget after it (one command)."""
    now = time.time() if now is None else now
    window = window_of(policy, subject, now)
    key = f"{policy.name}:{window.start}:{subject}"
    collection = RateLimitCounter.get_pymongo_collection()
    # findAndModify with an upsert on a string _id: atomic on both stores. The expiry goes in with
    # $max, not $setOnInsert, which nx-27017 ignores in an upserting findAndModify; it is the same
    # value for every write to this key, so $max only ever sets it once.
    document = await collection.find_one_and_update(
        {"_id": key},
        {"$inc": {"used": 1}, "$max": {"expires_at": datetime.fromtimestamp(window.end, UTC)}},
        projection={"used": 1, "_id": 0},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    assert document is not None  # an upsert returning the document after it always has one
    return Usage(policy, key, int(document["used"]), window.end)


async def charge(usages: Sequence[Usage], units: int) -> list[Usage]:
    """Spend `units` more on each budget (a failed login costs more than the unit already counted)."""
    if not usages or units <= 0:
        return list(usages)
    # One `update` command for all of them; the windows' keys already exist (count() made them).
    await RateLimitCounter.get_pymongo_collection().bulk_write(
        [UpdateOne({"_id": usage.key}, {"$inc": {"used": units}}) for usage in usages], ordered=False
    )
    return [Usage(u.policy, u.key, u.used + units, u.window_end) for u in usages]
