"""Every query of `user_requests` and `friendships`; other packages call these instead of querying them.

Filters on an indexed field spell out `$eq`: nx-27017 uses a compound index only for that form
(docs/store.md), and MongoDB reads it as the plain equality it is.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, UpdateMany, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.errors import BulkWriteError

from chat_api.common.pagination import count_matching
from chat_api.friends.models import Friendship, UserRequest, new_friendship_docs

DUPLICATE_KEY = 11000
Collection = AsyncCollection[dict[str, Any]]


def requests() -> Collection:
    return UserRequest.get_pymongo_collection()


def friendships() -> Collection:
    return Friendship.get_pymongo_collection()


# Friend requests


async def insert_request(doc: dict[str, Any]) -> None:
    """Raises DuplicateKeyError when a request between the pair is already waiting (the unique pending_key)."""
    await requests().insert_one(doc)


async def find_request(request_id: ObjectId) -> dict[str, Any] | None:
    return await requests().find_one({"_id": request_id})


async def waiting_requests(user_id: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Waiting requests to and from `user_id`, newest first (`limit` from `offset`), and how many in all."""
    incoming_query = {"to_id": {"$eq": user_id}, "status": {"$eq": "waiting"}}
    outgoing_query = {"from_id": {"$eq": user_id}, "status": {"$eq": "waiting"}}
    # Two indexed queries rather than one `$or` (which nx-27017 answers with a scan); each
    # needs at most offset + limit documents for the merged page.
    wanted = offset + limit
    incoming, outgoing, incoming_total, outgoing_total = await asyncio.gather(
        requests().find(incoming_query).sort("_id", DESCENDING).limit(wanted).to_list(),
        requests().find(outgoing_query).sort("_id", DESCENDING).limit(wanted).to_list(),
        count_matching(requests(), incoming_query),
        count_matching(requests(), outgoing_query),
    )
    merged = sorted(incoming + outgoing, key=lambda doc: doc["_id"], reverse=True)[offset:wanted]
    return merged, incoming_total + outgoing_total


async def close_request(request_id: ObjectId, status: str, now: Any) -> bool:
    """Answer a request that is still waiting; False if it was answered meanwhile.

    Conditional on "waiting", so of two answers given at once exactly one wins; the pending key
    becomes the request's own id, which frees the pair for a later request.
    """
    result = await requests().update_one(
        {"_id": request_id, "status": {"$eq": "waiting"}},
        {"$set": {"status": status, "pending_key": str(request_id), "answered_at": now}},
    )
    return result.modified_count == 1


# Friendships


async def friendship(owner_id: str, friend_id: str, projection: dict[str, int] | None = None) -> dict[str, Any] | None:
    """The owner's side of a friendship, found through the unique (owner_id, friend_id) index."""
    query = {"owner_id": {"$eq": owner_id}, "friend_id": {"$eq": friend_id}}
    return await friendships().find_one(query, projection or {"_id": 1})


async def are_friends(a: str, b: str) -> bool:
    return await friendship(a, b) is not None


async def friend_ids(user_id: str) -> list[str]:
    """The ids of a user's friends: the owner's side of each friendship (`owner_id_1_friend_id_1`)."""
    cursor = friendships().find({"owner_id": {"$eq": user_id}}, {"_id": 0, "friend_id": 1})
    return [doc["friend_id"] for doc in await cursor.to_list()]


async def insert_friendship(a: str, b: str, now: Any) -> list[ObjectId]:
    """Both sides of a friendship; a side that already exists is kept. The ids of the new ones."""
    docs = new_friendship_docs(a, b, now)
    ids: list[ObjectId] = [doc["_id"] for doc in docs]
    try:
        await friendships().insert_many(docs, ordered=False)
    except BulkWriteError as error:
        errors = error.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        clashed = {e["index"] for e in errors}
        return [oid for i, oid in enumerate(ids) if i not in clashed]
    return ids


async def delete_friendships(ids: list[ObjectId]) -> None:
    await friendships().delete_many({"_id": {"$in": ids}})


async def delete_pair(pair: str) -> int:
    """Both sides of the friendship of a pair; how many sides there were."""
    result = await friendships().delete_many({"pair": {"$eq": pair}})
    return result.deleted_count


async def friends_page(user_id: str, limit: int, offset: int) -> tuple[list[str], int]:
    """A page of my friends' ids in the order we became friends, and how many friends in all."""
    query = {"owner_id": {"$eq": user_id}}
    page = friendships().find(query, {"friend_id": 1}).sort("_id", 1).skip(offset).limit(limit)
    docs, total = await asyncio.gather(page.to_list(), count_matching(friendships(), query))
    return [doc["friend_id"] for doc in docs], total


# The direct conversation each side keeps on its friendship


async def record_message(pair: str, from_id: str, to_id: str, key: str, summary: dict[str, Any]) -> None:
    """A message of the pair was delivered: both sides' last message, the recipient's unread count,
    and the sender's read position, in one round trip."""
    last = {"$set": {"last_message": summary, "last_key": key}}
    await friendships().bulk_write(
        [
            # Only ever forwards: of two messages sent at once, the later key stays the summary.
            # Two updates rather than one `$or` (no last_key yet, or an older one): nx-27017
            # answers `$or` beside other conditions wrongly (docs/store.md).
            UpdateMany({"pair": {"$eq": pair}, "last_key": {"$eq": None}}, last),
            UpdateMany({"pair": {"$eq": pair}, "last_key": {"$lt": key}}, last),
            UpdateOne({"owner_id": {"$eq": to_id}, "friend_id": {"$eq": from_id}}, {"$inc": {"unread": 1}}),
            # The sender has read their own message.
            UpdateOne(
                {"owner_id": {"$eq": from_id}, "friend_id": {"$eq": to_id}, "read_key": {"$lt": key}},
                {"$set": {"read_key": key}},
            ),
        ],
        ordered=False,
    )


async def conversations_of(user_id: str) -> list[dict[str, Any]]:
    """My sides of the friendships that have messages: the friend, the last message, the unread count."""
    query = {"owner_id": {"$eq": user_id}, "last_key": {"$ne": None}}
    projection = {"friend_id": 1, "last_message": 1, "last_key": 1, "unread": 1}
    return await friendships().find(query, projection).to_list()


async def mark_read(side_id: ObjectId, last_key: str | None) -> bool:
    """Unread 0 and read up to `last_key`, only if no message arrived since it was read (else its
    unread +1 would be wiped out while read_key stays before it); False if one did."""
    result = await friendships().update_one(
        {"_id": side_id, "last_key": {"$eq": last_key}},
        {"$set": {"unread": 0, "read_key": last_key or ""}},
    )
    return result.matched_count == 1


def friendships_of(user_id: str, batch: int) -> AsyncCursor[dict[str, Any]]:
    """All my sides of my friendships (the friend, the pair, since when), in friend id order, read
    `batch` at a time (the export): the prefix of (owner_id, friend_id)."""
    cursor = friendships().find({"owner_id": {"$eq": user_id}}, {"friend_id": 1, "pair": 1, "created_at": 1})
    return cursor.sort("friend_id", ASCENDING).batch_size(batch)


def requests_involving(user_id: str, side: Literal["from_id", "to_id"], batch: int) -> AsyncCursor[dict[str, Any]]:
    """Every friend request I sent (`from_id`) or received (`to_id`), whatever its status, `batch` at
    a time (the export): the prefix of (from_id, status) or (to_id, status)."""
    return requests().find({side: {"$eq": user_id}}, {"pending_key": 0}).batch_size(batch)
