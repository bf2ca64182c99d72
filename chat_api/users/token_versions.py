"""The token versions of recent callers, per process: an authenticated request checks its token without a store command.

A token is valid while its `ver` claim equals its account's `token_version` (a logout raises it; a deletion removes
the account). Reading that for every request would cost a store round trip per request; this cache keeps the
version this process last read for each caller, for at most the app's TOKEN_CACHE_SECONDS. Revocation reaches it
two ways (docs/reliability.md, "Token revocation"):

- in the process that revokes, `forget()` runs before the revoking request answers;
- in every other process and instance, the `logout` event the revocation publishes makes its hub call `forget()`;
  should that event be late or lost, the entry is too old to be used after TOKEN_CACHE_SECONDS anyway.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

# Entries kept at most: about 100 bytes each. The oldest goes first, and is read again when it is next needed.
MAX_ENTRIES = 100_000


@dataclass(frozen=True)
class _Entry:
    version: int
    read_at: float  # monotonic seconds


class TokenVersions:
    """user id (hex) -> the token version read from the store, and when."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: dict[str, _Entry] = {}
        self._max_entries = max_entries
        # Raised by every forget(): a read that began before a revocation must not store what it read.
        self.generation = 0

    def get(self, user_id: str, max_age: float) -> int | None:
        """The version read at most `max_age` seconds ago, else None (read it from the store)."""
        entry = self._entries.get(user_id)
        if entry is None or time.monotonic() - entry.read_at >= max_age:
            return None
        return entry.version

    def put(self, user_id: str, version: int, generation: int) -> None:
        """Keep a version read from the store by a read that began at `generation` (stale reads are dropped)."""
        if generation != self.generation:
            return
        if user_id not in self._entries and len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]  # the oldest insertion
        self._entries[user_id] = _Entry(version, time.monotonic())

    def forget(self, user_id: str) -> None:
        """The account's tokens were revoked or the account deleted: read its version again next time."""
        self.generation += 1
        self._entries.pop(user_id, None)

    def __len__(self) -> int:
        return len(self._entries)


# One per process: each worker process is one app (several apps in one test process share it harmlessly, since
# user ids are never reused, and each app applies its own TOKEN_CACHE_SECONDS).
token_versions = TokenVersions()
