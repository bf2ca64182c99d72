"""Every query of the `users` collection; other packages call these instead of querying it themselves.

The read paths fetch the public fields with PyMongo and build UserPublic from them: a full Beanie
document costs several times more to build, and carries the password hash.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection

from chat_api.common.batching import Batcher
from chat_api.common.ids import parse_object_id
from chat_api.users.models import AccountDeletion, Flag, User, deletion_fields
from chat_api.users.schemas import PUBLIC_PROJECTION, UserPublic
from chat_api.users.token_versions import token_versions

_TOKEN_VERSION_PROJECTION = {"token_version": 1}


@dataclass(frozen=True)
class CurrentUser:
    """The user a request's token belongs to, and the token version it was checked against."""

    id: ObjectId
    token_version: int


def users() -> AsyncCollection[dict[str, Any]]:
    return User.get_pymongo_collection()


async def get_current_user(user_id: str, max_age: float) -> CurrentUser | None:
    """The token's user and its token version: from this process's cache when read at most `max_age` seconds
    ago, else one `find` by `_id` (None when the account is gone)."""
    oid = parse_object_id(user_id)
    if oid is None:
        return None
    key = str(oid)
    version = token_versions.get(key, max_age)
    if version is not None:
        return CurrentUser(oid, version)
    generation = token_versions.generation
    doc = await users().find_one({"_id": oid}, _TOKEN_VERSION_PROJECTION)
    if doc is None:
        return None
    version = int(doc.get("token_version", 0))
    token_versions.put(key, version, generation)
    return CurrentUser(oid, version)


def token_generation() -> int:
    """Pass it to remember_token_version with what a read begun now returns."""
    return token_versions.generation


def remember_token_version(user_id: str, version: int, generation: int) -> None:
    """A login read the account's token version: its token's first request needs no read of its own."""
    token_versions.put(user_id, version, generation)


async def _public_fields(ids: list[ObjectId]) -> dict[ObjectId, dict[str, Any]]:
    if len(ids) == 1:
        doc = await users().find_one({"_id": ids[0]}, PUBLIC_PROJECTION)
        return {} if doc is None else {ids[0]: doc}
    # `$in` on `_id` is indexed on both stores; the limit makes the answer one batch (no getMore).
    cursor = users().find({"_id": {"$in": ids}}, PUBLIC_PROJECTION).limit(len(ids))
    return {doc["_id"]: doc async for doc in cursor}


# The profiles asked for in one turn of the event loop: one `find` for all (chat_api/common/batching.py).
_profiles: Batcher[ObjectId, dict[str, Any]] = Batcher(_public_fields)


async def get_public_user(user_id: ObjectId) -> UserPublic | None:
    """One user's public profile; the profiles that requests ask for together are read with one command."""
    doc = await _profiles.get(user_id)
    return None if doc is None else UserPublic.from_stored(doc)


async def public_users(ids: Iterable[str]) -> dict[str, UserPublic]:
    """Public profiles by hex id, in one `$in` query (`$in` on `_id` is indexed on both stores)."""
    oids = [ObjectId(i) for i in dict.fromkeys(ids)]
    if not oids:
        return {}
    cursor = users().find({"_id": {"$in": oids}}, PUBLIC_PROJECTION)
    return {str(doc["_id"]): UserPublic.from_stored(doc) async for doc in cursor}


async def user_exists(user_id: ObjectId | str) -> bool:
    """Whether an account has this id (an ObjectId, or its hex form; anything else names nobody)."""
    oid = parse_object_id(user_id) if isinstance(user_id, str) else user_id
    return oid is not None and await users().find_one({"_id": oid}, {"_id": 1}) is not None


async def list_users(limit: int, offset: int) -> tuple[list[UserPublic], int]:
    page = users().find({}, PUBLIC_PROJECTION).sort("_id", 1).skip(offset).limit(limit)
    # The total goes out together with the page, so the request waits for one round trip
    # for both. It is the collection's metadata count: O(1) on MongoDB, where
    # count_documents({}) reads every document (seconds on nx-27017 at 100,000 users). It can
    # be off after an unclean shutdown of a MongoDB node and counts orphans on sharded clusters.
    docs, total = await asyncio.gather(page.to_list(), users().estimated_document_count())
    return [UserPublic.from_stored(doc) for doc in docs], total


async def insert_user(user: User) -> None:
    """Raises DuplicateKeyError when a unique index (email, chat_id) refuses it."""
    await user.insert()


async def insert_users(batch: list[User]) -> None:
    """A bulk load (the seed); raises BulkWriteError when a unique index refuses one of them."""
    await User.insert_many(batch)


async def highest_chat_id() -> int | None:
    """The highest chat_id in use (served by the unique `chat_id_1` index), None without users."""
    doc = await users().find_one({}, {"chat_id": 1}, sort=[("chat_id", -1)])
    return None if doc is None else int(doc["chat_id"])


async def set_fields(user_id: ObjectId, changes: dict[str, Any]) -> bool:
    """`$set` the changes; False if the user no longer exists. Raises DuplicateKeyError on a taken value.

    update_one, not Beanie's save()/set(): those use findAndModify, which nx-27017 answers with a
    silent no-op instead of a DuplicateKeyError.
    """
    result = await users().update_one({"_id": user_id}, {"$set": changes})
    return result.matched_count == 1


async def delete_user(user_id: ObjectId) -> bool:
    result = await users().delete_one({"_id": user_id})
    token_versions.forget(str(user_id))  # its tokens stop working in this process at once
    return result.deleted_count == 1


async def _exists(field: str, value: object) -> bool:
    return await users().find_one({field: {"$eq": value}}, {"_id": 1}) is not None


async def email_taken(email: str) -> bool:
    return await _exists("email", email)


async def chat_id_taken(chat_id: int) -> bool:
    return await _exists("chat_id", chat_id)


async def find_by_login(identifier: str | int) -> User | None:
    """The account a login names: an email (a string) or a chat_id (a number)."""
    field = "email" if isinstance(identifier, str) else "chat_id"
    return await User.find_one({field: {"$eq": identifier}})


async def flip_flag(user_id: str, flag: Flag) -> bool:
    """Set the presence flag if it differs; True for the one writer that changed it."""
    result = await users().update_one({"_id": ObjectId(user_id), "flag": {"$ne": flag}}, {"$set": {"flag": flag}})
    return result.modified_count == 1


async def revoke_tokens(user_id: ObjectId) -> None:
    """Log out everywhere: every token carrying the old version stops working (here at once; in other processes
    when the `logout` event the caller publishes reaches them, at most TOKEN_CACHE_SECONDS later)."""
    await users().update_one({"_id": user_id}, {"$inc": {"token_version": 1}, "$set": {"flag": "offline"}})
    token_versions.forget(str(user_id))


async def token_version(user_id: str) -> int:
    """The account's current token version (0 if it is gone)."""
    user = await users().find_one({"_id": ObjectId(user_id)}, {"token_version": 1})
    return int(user.get("token_version", 0)) if user else 0


# Account deletions under way (`account_deletions`, one per account being deleted)


def deletions() -> AsyncCollection[dict[str, Any]]:
    return AccountDeletion.get_pymongo_collection()


async def mark_deletion(user_id: ObjectId, erase: bool, now: datetime, lease_until_ms: int) -> None:
    """Record that the account is being deleted, held by the caller until `lease_until_ms` (an upsert on `_id`)."""
    fields = deletion_fields(str(user_id), erase, now, lease_until_ms)
    await deletions().update_one({"_id": user_id}, {"$set": fields}, upsert=True)


async def due_deletions(now_ms: int, limit: int) -> list[dict[str, Any]]:
    """Deletions nobody holds any more (their lease ran out): one query on `lease_until_ms_1`, also when there
    are none."""
    query = {"lease_until_ms": {"$lt": now_ms}}
    cursor = deletions().find(query, {"erase": 1, "lease_until_ms": 1}).sort("lease_until_ms", 1)
    return await cursor.limit(limit).to_list()


async def claim_deletion(user_id: ObjectId, lease_until_ms: int, until_ms: int) -> bool:
    """Take over a deletion whose lease was `lease_until_ms`: True for the one claimant whose write matched."""
    query = {"_id": user_id, "lease_until_ms": {"$eq": lease_until_ms}}
    result = await deletions().update_one(query, {"$set": {"lease_until_ms": until_ms}})
    return result.modified_count == 1


async def deletion_done(user_id: ObjectId) -> None:
    await deletions().delete_one({"_id": user_id})
