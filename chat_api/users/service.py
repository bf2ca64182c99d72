"""User logic and store access; raises domain errors, never HTTP ones."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from chat_api.security import PasswordHasher
from chat_api.users.models import Flag, User
from chat_api.users.schemas import PUBLIC_PROJECTION, UserCreate, UserPublic

UNIQUE_FIELDS = ("chat_id", "email")
_OBJECT_ID = re.compile(r"[0-9a-fA-F]{24}")
_TOKEN_PROJECTION = {**PUBLIC_PROJECTION, "token_version": 1}


class DuplicateValue(Exception):
    """A unique field (email or chat_id) already belongs to another user."""

    def __init__(self, field: str):
        super().__init__(f"{field} is already taken")
        self.field = field


@dataclass(frozen=True)
class CurrentUser:
    """The user a request's token belongs to: what the API may show, and the token version."""

    id: ObjectId
    public: UserPublic
    token_version: int


def parse_user_id(value: str) -> ObjectId | None:
    """The ObjectId for a 24-hex-digit string, else None.

    Always query `_id` with an ObjectId: nx-27017 also matches the hex string, MongoDB does not.
    """
    return ObjectId(value) if _OBJECT_ID.fullmatch(value) else None


def utc_now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


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
    """The one place a user document is built, for the API and the seed script alike."""
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
        await user.insert()
    except DuplicateKeyError as error:
        raise DuplicateValue(duplicate_field(error)) from None
    return user


# The read paths below fetch the public fields with PyMongo and build UserPublic from them:
# a full Beanie document costs several times more to build, and carries the password hash.


async def get_current_user(user_id: str) -> CurrentUser | None:
    """The token's user, its public fields and its token version."""
    oid = parse_user_id(user_id)
    if oid is None:
        return None
    doc = await User.get_pymongo_collection().find_one({"_id": oid}, _TOKEN_PROJECTION)
    if doc is None:
        return None
    return CurrentUser(oid, UserPublic.from_stored(doc), doc.get("token_version", 0))


async def get_public_user(user_id: ObjectId) -> UserPublic | None:
    doc = await User.get_pymongo_collection().find_one({"_id": user_id}, PUBLIC_PROJECTION)
    return None if doc is None else UserPublic.from_stored(doc)


async def user_exists(user_id: ObjectId) -> bool:
    return await User.get_pymongo_collection().find_one({"_id": user_id}, {"_id": 1}) is not None


async def list_users(limit: int, offset: int) -> tuple[list[UserPublic], int]:
    collection = User.get_pymongo_collection()
    page = collection.find({}, PUBLIC_PROJECTION).sort("_id", 1).skip(offset).limit(limit)
    # The total goes out together with the page, so the request waits for one round trip
    # for both. It is the collection's metadata count: O(1) on MongoDB, where
    # count_documents({}) reads every document (seconds on nx-27017 at 100,000 users). It can
    # be off after an unclean shutdown of a MongoDB node and counts orphans on sharded clusters.
    docs, total = await asyncio.gather(page.to_list(), collection.estimated_document_count())
    return [UserPublic.from_stored(doc) for doc in docs], total


async def update_user(user_id: ObjectId, changes: dict[str, Any], hasher: PasswordHasher) -> bool:
    """Apply a partial update; False if the user no longer exists."""
    assert changes, "an empty $set is an error on MongoDB; callers skip empty updates"
    if "password" in changes:
        changes = {**changes, "password": await hasher.hash(changes["password"])}
    try:
        # update_one, not Beanie's save()/set(): those use findAndModify, which nx-27017
        # answers with a silent no-op instead of a DuplicateKeyError.
        result = await User.get_pymongo_collection().update_one({"_id": user_id}, {"$set": changes})
    except DuplicateKeyError as error:
        raise DuplicateValue(duplicate_field(error)) from None
    return result.matched_count == 1


async def delete_user(user_id: ObjectId) -> bool:
    result = await User.get_pymongo_collection().delete_one({"_id": user_id})
    return result.deleted_count == 1


async def _exists(field: str, value: object) -> bool:
    found = await User.get_pymongo_collection().find_one({field: {"$eq": value}}, {"_id": 1})
    return found is not None


async def email_taken(email: str) -> bool:
    return await _exists("email", email)


async def chat_id_taken(chat_id: int) -> bool:
    return await _exists("chat_id", chat_id)


async def find_by_login(identifier: str | int) -> User | None:
    field = "email" if isinstance(identifier, str) else "chat_id"
    return await User.find_one({field: {"$eq": identifier}})


async def set_flag(user_id: ObjectId, flag: Flag) -> None:
    await User.get_pymongo_collection().update_one({"_id": user_id}, {"$set": {"flag": flag}})


async def revoke_tokens(user_id: ObjectId) -> None:
    """Log out everywhere: every token carrying the old version stops working."""
    await User.get_pymongo_collection().update_one(
        {"_id": user_id}, {"$inc": {"token_version": 1}, "$set": {"flag": "offline"}}
    )
