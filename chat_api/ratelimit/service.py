"""Fixed-window budgets counted in the store, shared by every worker and instance, reserved in blocks; no HTTP here."""

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


# The most units one reservation takes: with a budget of L, at most max(1, L // 16), and never more than this.
MAX_BLOCK = 256
# Budgets (policy, window, subject) a process remembers at most; the oldest is forgotten first. Forgetting one
# only leaves its unspent units unused (a stricter budget), never lets more through.
MAX_BUDGETS = 100_000


@dataclass
class _Reserved:
    """What this process holds of one budget's window."""

    window_end: float
    known: int = 0  # the store's count after our latest reservation: every process's units, ours included
    left: int = 0  # units we reserved and may still hand out without asking the store
    excess: int = 0  # units our reservations added beyond the budget: counted in the store, never handed out
    next_block: int = 1  # reservations double (1, 2, 4, ...) up to the budget's block

    @property
    def used(self) -> int:
        # Units spent, as far as this process can tell: exact when it is the only one spending this budget.
        return self.known - self.left - self.excess


def block_of(limit: int) -> int:
    """The most units one reservation of a budget of `limit` takes."""
    return max(1, min(MAX_BLOCK, limit // 16))


class Limiter:
    """Counts a process's requests against budgets kept in the store, in reserved blocks.

    Each request takes a unit from a block this process reserved with one atomic `$inc` in the store; only when
    the block is spent does it ask the store for another. The store's count is the sum of every process's
    reservations, and a reservation is granted only up to the budget, so no budget is ever exceeded, however
    many workers and instances serve an attacker (docs/reliability.md, "Rate limits across processes"). What
    a process reserved and did not hand out is lost when the window ends: at most one block per process.
    """

    def __init__(self) -> None:
        self._budgets: dict[str, _Reserved] = {}

    async def count(self, policy: Policy, subject: str, now: float | None = None) -> Usage:
        """Spend one unit of `subject`'s budget and return the budget after it (a store command only when this
        process's block of it is spent, and none once the store said the window's budget is gone)."""
        now = time.time() if now is None else now
        window = window_of(policy, subject, now)
        key = f"{policy.name}:{window.start}:{subject}"
        limit = policy.quota.limit
        reserved = self._budgets.get(key)
        if reserved is None:
            reserved = self._remember(key, _Reserved(window.end), now)
        while reserved.left == 0 and reserved.known < limit:
            # (A loop: a concurrent request of this process may take the units this one reserved.)
            await self._reserve(key, reserved, min(reserved.next_block, block_of(limit)), limit)
        if reserved.left == 0:
            # The budget is spent: refused without asking the store again until the window ends.
            return Usage(policy, key, max(reserved.used, limit) + 1, window.end)
        reserved.left -= 1
        return Usage(policy, key, reserved.used, window.end)

    async def charge(self, usages: Sequence[Usage], units: int) -> list[Usage]:
        """Spend `units` more on each budget (a failed login costs more than the unit already counted): from the
        reserved blocks first, the rest with one `update` command for all of them."""
        if not usages or units <= 0:
            return list(usages)
        updates = []
        for usage in usages:
            reserved = self._budgets.get(usage.key)
            if reserved is None:  # forgotten meanwhile: the store's count is what matters
                updates.append(UpdateOne({"_id": usage.key}, {"$inc": {"used": units}}))
                continue
            taken = min(reserved.left, units)
            reserved.left -= taken
            if units > taken:
                reserved.known += units - taken
                updates.append(UpdateOne({"_id": usage.key}, {"$inc": {"used": units - taken}}))
        if updates:
            # The windows' keys already exist (a reservation made them).
            await RateLimitCounter.get_pymongo_collection().bulk_write(updates, ordered=False)
        return [Usage(u.policy, u.key, u.used + units, u.window_end) for u in usages]

    def _remember(self, key: str, reserved: _Reserved, now: float) -> _Reserved:
        if len(self._budgets) >= MAX_BUDGETS:
            self._budgets = {k: r for k, r in self._budgets.items() if r.window_end > now}
            while len(self._budgets) >= MAX_BUDGETS:
                del self._budgets[next(iter(self._budgets))]
        self._budgets[key] = reserved
        return reserved

    async def _reserve(self, key: str, reserved: _Reserved, units: int, limit: int) -> None:
        collection = RateLimitCounter.get_pymongo_collection()
        # findAndModify with an upsert on a string _id: atomic on both stores. The expiry goes in with
        # $max, not $setOnInsert, which nx-27017 ignores in an upserting findAndModify; it is the same
        # value for every write to this key, so $max only ever sets it once.
        document = await collection.find_one_and_update(
            {"_id": key},
            {"$inc": {"used": units}, "$max": {"expires_at": datetime.fromtimestamp(reserved.window_end, UTC)}},
            projection={"used": 1, "_id": 0},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert document is not None  # an upsert returning the document after it always has one
        total = int(document["used"])
        granted = max(0, min(units, limit - (total - units)))
        # Concurrent requests of this process may each reserve: their blocks add up.
        reserved.known = max(reserved.known, total)
        reserved.left += granted
        reserved.excess += units - granted
        reserved.next_block = units * 2
