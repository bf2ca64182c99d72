"""Accounts: creating and changing them under the unique email and chat_id; raises domain errors, never HTTP ones."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from chat_api.common.clock import utc_now
from chat_api.common.errors import Conflict, Forbidden, UserNotFound
from chat_api.security import PasswordHasher
from chat_api.users import repository
from chat_api.users.models import User
from chat_api.users.schemas import UserCreate

UNIQUE_FIELDS = ("chat_id", "email")


class DuplicateValue(Conflict):
    """A unique field (email or chat_id) already belongs to another user."""

    def __init__(self, field: str):
        super().__init__(
            f"{field} is already taken", errors=[{"field": field, "message": "already taken", "type": "taken"}]
        )
        self.field = field


def duplicate_field(error: DuplicateKeyError) -> str:
    # MongoDB names the key in keyPattern/keyValue; nx-27017 only names its SQLite index
    # (`idx_users_email`) in errmsg.
    details: Mapping[str, Any] = error.details or {}
    keys = {**details.get("keyValue", {}), **details.get("keyPattern", {})}
    text = f"{details.get('errmsg', '')} {error}"
    for field in UNIQUE_FIELDS:
        if field in keys:
            return field
    for field in UNIQUE_FIELDS:
        if field in text:
            return field
    return "value"


def new_user(data: UserCreate, password_hash: str, now: datetime | None = None) -> User:
    """The one place a user document is built, for the API, the seed script and the tests alike."""
    register_at = data.register_at or now or utc_now()
    return User(
        chat_id=data.chat_id,
        email=data.email,
        username=data.username,
        password=password_hash,
        personality=data.personality,
        avatar=data.avatar,
        register_at=register_at,
        sex=data.sex,
        birthday=data.birthday or register_at,
        phone=data.phone,
    )


async def create_user(data: UserCreate, hasher: PasswordHasher) -> User:
    user = new_user(data, await hasher.hash(data.password))
    try:
        # The unique indexes decide, so two concurrent registrations cannot both win.
        await repository.insert_user(user)
    except DuplicateKeyError as error:
        raise DuplicateValue(duplicate_field(error)) from None
    return user


async def own_account(caller: ObjectId, user_id: ObjectId | None, action: str) -> ObjectId:
    """`user_id` if it is the caller's own; UserNotFound if no such user, else Forbidden."""
    if user_id is None:
        raise UserNotFound
    if user_id == caller:
        return user_id
    if not await repository.user_exists(user_id):
        raise UserNotFound
    raise Forbidden(f"You can only {action} your own account")


async def update_user(user_id: ObjectId, changes: dict[str, Any], hasher: PasswordHasher) -> None:
    """Apply a partial update (nothing to do for an empty one); UserNotFound if the user is gone."""
    if not changes:
        return
    if "password" in changes:
        changes = {**changes, "password": await hasher.hash(changes["password"])}
    try:
        updated = await repository.set_fields(user_id, changes)
    except DuplicateKeyError as error:
        raise DuplicateValue(duplicate_field(error)) from None
    if not updated:
        raise UserNotFound
