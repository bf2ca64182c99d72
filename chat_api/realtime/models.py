"""Socket presence records: a user is online while one of theirs is alive."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from beanie import Document
from pymongo import IndexModel

from chat_api.store.keys import ascending


class PresenceRecord(Document):
    # One per open socket (or per login): the worker holding it refreshes `expires_at`; a
    # worker that dies stops refreshing, and its users go offline when their records expire.
    id: str  # type: ignore[assignment]
    user_id: str
    worker: str
    expires_at: datetime

    class Settings:
        name = "presence"
        indexes: ClassVar[list[IndexModel]] = [ascending("user_id"), ascending("worker"), ascending("expires_at")]
