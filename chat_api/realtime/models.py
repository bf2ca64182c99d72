"""Presence records (a user is online while one of theirs is alive) and the processes' heartbeats they lean on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from beanie import Document
from pymongo import IndexModel

from chat_api.store.keys import ascending

# The `expires_at` of an open socket's record: it has no expiry of its own, its process's heartbeat stands
# for it. A date rather than a missing field, so "live" is one range condition (`expires_at >= now`) that
# both stores serve from the index, with no `$or` of a null (docs/store.md).
OPEN = datetime(9999, 12, 31, tzinfo=UTC)
# The `_id` of the reaper's lease in `processes`; never a process id ("host:pid").
REAPER_LEASE = "reaper"


class PresenceRecord(Document):
    # One per open socket (expires_at OPEN, `process` the process holding it), one per closed socket during
    # its grace period, and one per login (process "login"); the reaper deletes the expired ones and those
    # of dead processes.
    id: str  # type: ignore[assignment]
    user_id: str
    process: str
    expires_at: datetime

    class Settings:
        name = "presence"
        indexes: ClassVar[list[IndexModel]] = [ascending("user_id"), ascending("process"), ascending("expires_at")]


class ProcessHeartbeat(Document):
    # One per process (`_id` "host:pid"), pushed forward every HEARTBEAT_INTERVAL: a process is dead once its
    # `expires_at` is more than the skew margin past. Plus the reaper's lease, `_id` REAPER_LEASE, which
    # has `holder` and `until` instead (never `expires_at`, so the dead-process query never sees it).
    id: str  # type: ignore[assignment]
    expires_at: datetime | None = None
    holder: str | None = None
    until: datetime | None = None

    class Settings:
        name = "processes"
        indexes: ClassVar[list[IndexModel]] = [ascending("expires_at")]


def socket_record(user_id: str, process_id: str) -> dict[str, Any]:
    """The fields of an open socket's record."""
    return {"user_id": user_id, "process": process_id, "expires_at": OPEN}


def login_record(user_id: str, expires_at: datetime) -> dict[str, Any]:
    """The fields of a login's record: it counts until `expires_at`, whichever process wrote it."""
    return {"user_id": user_id, "process": "login", "expires_at": expires_at}


def heartbeat_fields(expires_at: datetime) -> dict[str, Any]:
    return {"expires_at": expires_at}


def lease_fields(holder: str, until: datetime) -> dict[str, Any]:
    return {"holder": holder, "until": until}
