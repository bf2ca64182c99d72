"""The user document as stored in MongoDB; only users.repository queries it."""

from __future__ import annotations

from typing import ClassVar, Literal

from beanie import Document
from pymongo import IndexModel

from chat_api.common.fields import StoredTime
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
    register_at: StoredTime
    sex: Sex = "unknown"
    birthday: StoredTime
    phone: str | None = None
    flag: Flag = "offline"
    # Logout increments it; a token carries the value it was issued with, so every older
    # token stops working without comparing clocks.
    token_version: int = 0

    class Settings:
        name = "users"
        # The one place indexes are declared: the app and scripts.indexes both read it.
        indexes: ClassVar[list[IndexModel]] = [ascending("email", unique=True), ascending("chat_id", unique=True)]
