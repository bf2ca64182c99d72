"""The user document as stored in MongoDB; only users.repository queries it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

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


class AccountDeletion(Document):
    """An account deletion that was asked for and is not finished yet (docs/reliability.md, "Account deletion").

    Written before anything else is deleted and removed once everything is, so a deletion cut short by a crash
    is found and finished by the sweeper. `_id` is the deleted user's id.
    """

    user_id: str  # the same id as a hex string, the form every other collection stores
    erase: bool = False  # `?erase=true`: also blank the messages it sent and delete its files
    requested_at: datetime
    # Whoever finishes the deletion holds it until then (epoch ms): the request that asked for it, then the
    # sweeper once the lease has run out. An int: nx-27017 turns dates written by $set into strings.
    lease_until_ms: int

    class Settings:
        name = "account_deletions"
        indexes: ClassVar[list[IndexModel]] = [ascending("lease_until_ms")]


def deletion_fields(user_id: str, erase: bool, now: datetime, lease_until_ms: int) -> dict[str, Any]:
    """An account deletion as stored (the fields `$set` on its `_id`, the user's ObjectId)."""
    return {"user_id": user_id, "erase": erase, "requested_at": now, "lease_until_ms": lease_until_ms}
