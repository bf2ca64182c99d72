"""Every query of `user_requests` and `friendships`; other packages call these instead of querying them.

Filters on an indexed field spell out `$eq`: nx-27017 uses a compound index only for that form
(docs/store.md), and MongoDB reads it as the plain equality it is.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.errors import BulkWriteError

from chat_api.common.pagination import COUNT_BATCH, count_matching
from chat_api.friends.models import DirectConversation, Friendship, UserRequest, new_friendship_docs, pair_ends

DUPLICATE_KEY = 11000
Collection = AsyncCollection[dict[str, Any]]


def requests() -> Collection:
    return UserRequest.get_pymongo_collection()


def friendships() -> Collection:
    return Friendship.get_pymongo_collection()


def direct_conversations() -> Collection:
    return DirectConversation.get_pymongo_collection()


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


# A side kept as the read-only conversation with a deleted account is no friendship. The field is only ever
# written as true, so "absent" is "a friendship": `$exists` rather than `$ne: True`, which nx-27017 ignores in a
# delete (docs/store.md). Both stores apply it after the index on the other fields.
LIVE = {"friend_deleted": {"$exists": False}}


async def are_friends(a: str, b: str) -> bool:
    side = await friendship(a, b, {"friend_deleted": 1})
    return side is not None and not side.get("friend_deleted", False)


async def friend_ids(user_id: str) -> list[str]:
    """The ids of a user's friends: the owner's side of each friendship (`owner_id_1_friend_id_1`)."""
    cursor = friendships().find({"owner_id": {"$eq": user_id}, **LIVE}, {"_id": 0, "friend_id": 1})
    return [doc["friend_id"] for doc in await cursor.to_list()]


async def insert_friendship(a: str, b: str, now: Any, read_n: int = 0) -> list[ObjectId]:
    """Both sides of a friendship, read up to `read_n`; a side that already exists is kept. The ids of the new ones."""
    docs = new_friendship_docs(a, b, now, read_n)
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
    result = await friendships().delete_many({"pair": {"$eq": pair}, **LIVE})
    return result.deleted_count


async def friends_page(user_id: str, limit: int, offset: int) -> tuple[list[str], int]:
    """A page of my friends' ids in the order we became friends, and how many friends in all."""
    query = {"owner_id": {"$eq": user_id}, **LIVE}
    page = friendships().find(query, {"friend_id": 1}).sort("_id", 1).skip(offset).limit(limit)
    docs, total = await asyncio.gather(page.to_list(), count_matching(friendships(), query))
    return [doc["friend_id"] for doc in docs], total


# The direct conversation: its counter (`direct_conversations`), and each side's view on its friendship


async def take_number(pair: str) -> int:
    """The next number of the pair's conversation, taken atomically from its counter document (created
    by the first message): one findAndModify, an upsert on a string `_id`, which both stores serve."""
    counter = await direct_conversations().find_one_and_update(
        {"_id": pair},
        {"$inc": {"last_n": 1}, "$set": pair_ends(pair)},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    if counter is None:  # an upsert returning the document after it always has one
        raise RuntimeError(f"the counter of {pair} was not returned")
    return int(counter["last_n"])


async def direct_conversations_of(user_id: str) -> list[str]:
    """The pairs of every direct conversation `user_id` has had (friends now or not), in pair order: two
    indexed reads, `low_id_1` and `high_id_1`, sent together."""
    found = await asyncio.gather(
        *(
            direct_conversations().find({end: {"$eq": user_id}}, {"_id": 1}).batch_size(COUNT_BATCH).to_list()
            for end in ("low_id", "high_id")
        )
    )
    return sorted(str(doc["_id"]) for docs in found for doc in docs)


async def last_number(pair: str) -> int:
    """The last number the pair's conversation has taken (0: none yet)."""
    counter = await direct_conversations().find_one({"_id": pair}, {"last_n": 1})
    return int(counter["last_n"]) if counter is not None else 0


async def record_message(pair: str, n: int, summary: dict[str, Any]) -> None:
    """The message number `n` of the pair was delivered: both sides' last message, in one write.

    Only ever forwards: of two messages sent at once, the higher number stays the summary. Nobody's
    read position moves: my own messages never count as unread, and sending one does not mean I
    read what came before it.
    """
    await friendships().update_many(
        {"pair": {"$eq": pair}, "message_n": {"$lt": n}}, {"$set": {"last_message": summary, "message_n": n}}
    )


async def replace_last_message(pair: str, n: int, summary: dict[str, Any]) -> None:
    """Put `summary` in place of both sides' last message if that is still the message numbered `n` (it was
    recalled or edited); a newer message that got there first is left alone."""
    await friendships().update_many(
        {"pair": {"$eq": pair}, "message_n": {"$eq": n}}, {"$set": {"last_message": summary}}
    )


async def conversations_of(user_id: str) -> list[dict[str, Any]]:
    """My sides of the friendships that show a message: the friend, the last message, my read position."""
    query = {"owner_id": {"$eq": user_id}, "message_n": {"$gt": 0}}
    projection = {
        "friend_id": 1,
        "pair": 1,
        "last_message": 1,
        "message_n": 1,
        "read_n": 1,
        "muted": 1,
        "peer_read_up_to": 1,
    }
    return await friendships().find(query, projection).to_list()


async def mark_read(owner_id: str, friend_id: str, n: int, up_to: str) -> bool:
    """Read up to the message number `n` (whose id is `up_to`), and tell the friend's side so, in one command;
    whether the position moved. A slower concurrent call moves neither back.

    The friend's side first (`ordered`): the owner's position moves last, so a crash in between leaves it
    behind, and the next call writes both. The friend's side is matched by `peer_read_n` below `n`, or absent
    (a friendship stored before issue 13: `$exists`, as nx-27017 has no `$not`; docs/store.md).
    """
    peer = {"owner_id": {"$eq": friend_id}, "friend_id": {"$eq": owner_id}}
    told = {"$set": {"peer_read_n": n, "peer_read_up_to": up_to}}
    result = await friendships().bulk_write(
        [
            UpdateOne({**peer, "peer_read_n": {"$lt": n}}, told),
            UpdateOne({**peer, "peer_read_n": {"$exists": False}}, told),
            UpdateOne(
                {"owner_id": {"$eq": owner_id}, "friend_id": {"$eq": friend_id}, "read_n": {"$lt": n}},
                {"$set": {"read_n": n}},
            ),
        ],
        ordered=True,
    )
    return result.modified_count > 0


async def set_muted(owner_id: str, friend_id: str, muted: bool) -> bool:
    """Mute or unmute the owner's conversation with a friend; False if the owner has no side with them."""
    query = {"owner_id": {"$eq": owner_id}, "friend_id": {"$eq": friend_id}}
    return (await friendships().update_one(query, {"$set": {"muted": muted}})).matched_count == 1


# An account being deleted (accounts.service)


async def delete_waiting_requests_of(user_id: str) -> None:
    """The waiting requests to and from a user, through (to_id, status) and (from_id, status); answering one is
    then a 404. Answered ones stay (no route shows them)."""
    await asyncio.gather(
        requests().delete_many({"to_id": {"$eq": user_id}, "status": {"$eq": "waiting"}}),
        requests().delete_many({"from_id": {"$eq": user_id}, "status": {"$eq": "waiting"}}),
    )


async def sides_of(user_id: str) -> list[dict[str, Any]]:
    """A user's own sides of their friendships: the friend and the conversation's newest message."""
    projection = {"friend_id": 1, "last_message": 1, "friend_deleted": 1}
    cursor = friendships().find({"owner_id": {"$eq": user_id}}, projection)
    return await cursor.batch_size(COUNT_BATCH).to_list()


async def end_friendships(user_id: str, friends_sides: list[UpdateOne]) -> None:
    """The friends' sides become read-only conversations (`friends_sides`, one update for each of the user's own
    sides, in one round trip), then the user's own sides go: a crash in between leaves them to be found again."""
    if not friends_sides:
        return  # no friendship, nothing to delete
    await friendships().bulk_write(friends_sides, ordered=False)
    await friendships().delete_many({"owner_id": {"$eq": user_id}})


def ended_side(friend_id: str, user_id: str, last_message: dict[str, Any] | None) -> UpdateOne:
    """The update that makes the friend's side of a friendship with the deleted `user_id` read-only, and puts
    `last_message` (the erased summary) on it when given."""
    changes: dict[str, Any] = {"friend_deleted": True}
    if last_message is not None:
        changes["last_message"] = last_message
    return UpdateOne({"owner_id": {"$eq": friend_id}, "friend_id": {"$eq": user_id}}, {"$set": changes})


def friendships_of(user_id: str, batch: int) -> AsyncCursor[dict[str, Any]]:
    """All my sides of my friendships (the friend, the pair, since when), in friend id order, read
    `batch` at a time (the export): the prefix of (owner_id, friend_id)."""
    cursor = friendships().find({"owner_id": {"$eq": user_id}}, {"friend_id": 1, "pair": 1, "created_at": 1})
    return cursor.sort("friend_id", ASCENDING).batch_size(batch)


def requests_involving(user_id: str, side: Literal["from_id", "to_id"], batch: int) -> AsyncCursor[dict[str, Any]]:
    """Every friend request I sent (`from_id`) or received (`to_id`), whatever its status, `batch` at
    a time (the export): the prefix of (from_id, status) or (to_id, status)."""
    return requests().find({side: {"$eq": user_id}}, {"pending_key": 0}).batch_size(batch)
