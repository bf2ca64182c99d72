"""Socket presence records: a user is online while one of theirs is alive."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from beanie import Document
from pymongo import ASCENDING, IndexModel


class PresenceRecord(Document):
    # One per open socket (or per login): the worker holding it refreshes `expires_at`; a
    # worker that dies stops refreshing, and its users go offline when their records expire.
    id: str  # type: ignore[assignment]
    user_id: str
    worker: str
    expires_at: datetime

    class Settings:
        name = "presence"
        indexes: ClassVar[list[IndexModel]] = [
            IndexModel([("user_id", ASCENDING)], name="user_id_1"),
            IndexModel([("worker", ASCENDING)], name="worker_1"),
            IndexModel([("expires_at", ASCENDING)], name="expires_at_1"),
        ]
