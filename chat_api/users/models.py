"""The user document as stored in MongoDB; only users.repository queries it."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from beanie import Document
from pydantic import field_validator
from pymongo import IndexModel

from chat_api.common.clock import as_utc
from chat_api.store.keys import ascending

Sex = Literal["man", "female", "unknown"]
Flag = Literal["online", "offline"]


class User(Document):
    # Field names follow the original egg.js schema so existing clients keep working.
    chat_id: int
    email: str  # always stored trimmed and lower-cased
    username: str
    password: str  # the bcrypt hash; never leaves the service layer
    personality: str | None = None
    avatar: str | None = None
    register_at: datetime
    sex: Sex = "unknown"
    birthday: datetime
    phone: str | None = None
    flag: Flag = "offline"
    # Logout increments it; a token carries the value it was issued with, so every older
    # token stops working without comparing clocks.
    token_version: int = 0

    @field_validator("register_at", "birthday", mode="after")
    @classmethod
    def _as_utc(cls, value: datetime) -> datetime:
        return as_utc(value)

    class Settings:
        name = "users"
        # The one place indexes are declared: the app and scripts.indexes both read it.
        indexes: ClassVar[list[IndexModel]] = [ascending("email", unique=True), ascending("chat_id", unique=True)]
