"""Every query of `blocks`; the packages that honour blocks (messages, friends, groups, realtime, accounts,
export) call these. Equality filters spell out `$eq`, the form nx-27017 uses its indexes for (docs/store.md)."""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.errors import DuplicateKeyError

from chat_api.blocks.models import Block
from chat_api.common.pagination import COUNT_BATCH, count_matching

Collection = AsyncCollection[dict[str, Any]]


def blocks() -> Collection:
    return Block.get_pymongo_collection()


def one(owner_id: str, blocked_id: str) -> dict[str, Any]:
    return {"owner_id": {"$eq": owner_id}, "blocked_id": {"$eq": blocked_id}}


async def insert(doc: dict[str, Any]) -> bool:
    """Store a block; False if the owner already blocks that user (the unique index decides, so two
    concurrent PUTs leave one block)."""
    try:
        await blocks().insert_one(doc)
    except DuplicateKeyError:
        return False
    return True


async def delete(owner_id: str, blocked_id: str) -> bool:
    """Lift a block; False if there was none."""
    return (await blocks().delete_one(one(owner_id, blocked_id))).deleted_count == 1


async def blocks_user(owner_id: str, blocked_id: str) -> bool:
    """Whether `owner_id` blocks `blocked_id`: one read of the unique `owner_id_1_blocked_id_1`."""
    return await blocks().find_one(one(owner_id, blocked_id), {"_id": 1}) is not None


async def blockers_of(user_id: str) -> set[str]:
    """Who blocks `user_id` (`blocked_id_1`): a few people at most, in one reply."""
    cursor = blocks().find({"blocked_id": {"$eq": user_id}}, {"_id": 0, "owner_id": 1}).batch_size(COUNT_BATCH)
    return {doc["owner_id"] for doc in await cursor.to_list()}


async def page(owner_id: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """A page of my blocks in the order I made them (ids grow with time), and how many in all."""
    mine = {"owner_id": {"$eq": owner_id}}
    cursor = blocks().find(mine, {"blocked_id": 1, "created_at": 1}).sort("_id", ASCENDING).skip(offset).limit(limit)
    docs, total = await asyncio.gather(cursor.to_list(), count_matching(blocks(), mine))
    return docs, total


def blocks_of(owner_id: str, batch: int) -> AsyncCursor[dict[str, Any]]:
    """All my blocks (whom, since when) in user id order, `batch` at a time (the export): the prefix of
    `owner_id_1_blocked_id_1`."""
    cursor = blocks().find({"owner_id": {"$eq": owner_id}}, {"_id": 0, "blocked_id": 1, "created_at": 1})
    return cursor.sort("blocked_id", ASCENDING).batch_size(batch)


async def delete_all_of(user_id: str) -> None:
    """An account being deleted: its blocks and the blocks of it, both ways (each through its own index)."""
    await asyncio.gather(
        blocks().delete_many({"owner_id": {"$eq": user_id}}), blocks().delete_many({"blocked_id": {"$eq": user_id}})
    )
