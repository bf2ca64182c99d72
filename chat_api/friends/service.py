"""Friend requests and friendships: store access and rules, no HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from bson import ObjectId
from pymongo import DESCENDING
from pymongo.errors import BulkWriteError, DuplicateKeyError

from chat_api.events.service import publish
from chat_api.friends.models import Friendship, UserRequest, pair_key
from chat_api.friends.schemas import FriendRequestPublic, WaitingRequest
from chat_api.users.models import User
from chat_api.users.schemas import PUBLIC_PROJECTION, UserPublic
from chat_api.users.service import parse_user_id, utc_now

DUPLICATE_KEY = 11000


class FriendsError(Exception):
    """A rule of friend requests or friendships refused the operation; `reason` says which."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def unknown_user() -> FriendsError:
    return FriendsError("unknown_user", "User not found")


async def public_users(ids: Iterable[str]) -> dict[str, UserPublic]:
    """Public profiles by hex id, in one `$in` query (`$in` on `_id` is indexed on both stores)."""
    oids = [ObjectId(i) for i in dict.fromkeys(ids)]
    if not oids:
        return {}
    cursor = User.get_pymongo_collection().find({"_id": {"$in": oids}}, PUBLIC_PROJECTION)
    return {str(doc["_id"]): UserPublic.from_stored(doc) async for doc in cursor}


async def user_exists(user_id: str) -> bool:
    oid = parse_user_id(user_id)
    return oid is not None and await User.get_pymongo_collection().find_one({"_id": oid}, {"_id": 1}) is not None


async def friendship(owner_id: str, friend_id: str, projection: dict[str, int] | None = None) -> dict[str, Any] | None:
    """The owner's side of a friendship, found through the unique (owner_id, friend_id) index."""
    # `$eq` spelled out: nx-27017 uses a compound index only for that form (README, "The store").
    query = {"owner_id": {"$eq": owner_id}, "friend_id": {"$eq": friend_id}}
    return await Friendship.get_pymongo_collection().find_one(query, projection or {"_id": 1})


async def are_friends(a: str, b: str) -> bool:
    return await friendship(a, b) is not None


async def send_request(from_id: str, to_id: str, verify_data: str) -> str:
    """Store a waiting request and tell the recipient; the new request's id."""
    if parse_user_id(to_id) is None:
        raise unknown_user()
    if to_id == from_id:
        raise FriendsError("self", "You cannot send a friend request to yourself")
    exists, friends = await asyncio.gather(user_exists(to_id), are_friends(from_id, to_id))
    if not exists:
        raise unknown_user()
    if friends:
        raise FriendsError("already_friends", "You are already friends")
    doc: dict[str, Any] = {
        "_id": ObjectId(),
        "from_id": from_id,
        "to_id": to_id,
        "verify_data": verify_data,
        "status": "waiting",
        "pending_key": pair_key(from_id, to_id),
        "created_at": utc_now(),
        "answered_at": None,
    }
    try:
        # The unique pending_key decides between two requests sent at once, in either direction.
        await UserRequest.get_pymongo_collection().insert_one(doc)
    except DuplicateKeyError:
        raise FriendsError("waiting", "A friend request between you is already waiting") from None
    await publish("friend_request", [to_id], {"request": request_json(doc)})
    return str(doc["_id"])


def request_json(doc: dict[str, Any]) -> dict[str, Any]:
    return FriendRequestPublic.from_stored(doc).model_dump(mode="json")


async def waiting_requests(user_id: str, limit: int, offset: int) -> tuple[list[WaitingRequest], int]:
    """Waiting requests to and from `user_id`, newest first, and how many there are in all."""
    collection = UserRequest.get_pymongo_collection()
    incoming_query = {"to_id": {"$eq": user_id}, "status": {"$eq": "waiting"}}
    outgoing_query = {"from_id": {"$eq": user_id}, "status": {"$eq": "waiting"}}
    # Two indexed queries rather than one `$or` (which nx-27017 answers with a scan); each
    # needs at most offset + limit documents for the merged page.
    wanted = offset + limit
    incoming, outgoing, incoming_total, outgoing_total = await asyncio.gather(
        collection.find(incoming_query).sort("_id", DESCENDING).limit(wanted).to_list(),
        collection.find(outgoing_query).sort("_id", DESCENDING).limit(wanted).to_list(),
        collection.count_documents(incoming_query),
        collection.count_documents(outgoing_query),
    )
    merged = sorted(incoming + outgoing, key=lambda doc: doc["_id"], reverse=True)[offset:wanted]
    profiles = await public_users(doc["from_id"] if doc["to_id"] == user_id else doc["to_id"] for doc in merged)
    page = []
    for doc in merged:
        incoming_request = doc["to_id"] == user_id
        other = profiles.get(doc["from_id"] if incoming_request else doc["to_id"])
        if other is None:
            continue  # the other account was deleted since
        public = FriendRequestPublic.from_stored(doc)
        page.append(
            WaitingRequest(**public.model_dump(), direction="incoming" if incoming_request else "outgoing", user=other)
        )
    return page, incoming_total + outgoing_total


async def answer_request(user_id: str, request_id: str, status: str) -> None:
    """Agree to or refuse a waiting request sent to `user_id`."""
    oid = parse_user_id(request_id)
    if oid is None:
        raise FriendsError("unknown_request", "Friend request not found")
    collection = UserRequest.get_pymongo_collection()
    doc = await collection.find_one({"_id": oid})
    if doc is None:
        raise FriendsError("unknown_request", "Friend request not found")
    if doc["to_id"] != user_id:
        raise FriendsError("not_recipient", "Only the recipient may answer a friend request")
    if doc["status"] != "waiting":
        raise FriendsError("answered", "This friend request was already answered")
    created: list[ObjectId] = []
    if status == "agree":
        # Friendships first: a crash before the status update below leaves a request still
        # waiting beside a friendship, and answering it again completes it.
        created = await create_friendship(doc["from_id"], doc["to_id"])
    now = utc_now()
    # Conditional on "waiting", so of two answers given at once exactly one wins; the pending
    # key becomes the request's own id, which frees the pair for a later request.
    result = await collection.update_one(
        {"_id": oid, "status": {"$eq": "waiting"}},
        {"$set": {"status": status, "pending_key": str(oid), "answered_at": now}},
    )
    if result.modified_count != 1:
        if created:
            # This agree lost to a refuse given at the same moment: undo what it alone created.
            await Friendship.get_pymongo_collection().delete_many({"_id": {"$in": created}})
        raise FriendsError("answered", "This friend request was already answered")
    answered = {**doc, "status": status, "answered_at": now, "pending_key": str(oid)}
    await publish("friend_request", [doc["from_id"], doc["to_id"]], {"request": request_json(answered)})


async def create_friendship(a: str, b: str) -> list[ObjectId]:
    """Both sides of a friendship; a side that already exists is kept. The ids of the new ones."""
    now = utc_now()
    pair = pair_key(a, b)
    ids = [ObjectId(), ObjectId()]
    docs: list[dict[str, Any]] = [
        {"_id": oid, "owner_id": owner, "friend_id": friend, "pair": pair, "created_at": now}
        | {"last_message": None, "last_key": None, "unread": 0, "read_key": ""}
        for oid, (owner, friend) in zip(ids, ((a, b), (b, a)), strict=True)
    ]
    try:
        await Friendship.get_pymongo_collection().insert_many(docs, ordered=False)
    except BulkWriteError as error:
        errors = error.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        clashed = {e["index"] for e in errors}
        return [oid for i, oid in enumerate(ids) if i not in clashed]
    return ids


async def list_friends(user_id: str, limit: int, offset: int) -> tuple[list[UserPublic], int]:
    """My friends' public profiles (with their presence flag) in the order they became friends."""
    collection = Friendship.get_pymongo_collection()
    query = {"owner_id": {"$eq": user_id}}
    page = collection.find(query, {"friend_id": 1}).sort("_id", 1).skip(offset).limit(limit)
    docs, total = await asyncio.gather(page.to_list(), collection.count_documents(query))
    ids = [doc["friend_id"] for doc in docs]
    profiles = await public_users(ids)
    return [profiles[i] for i in ids if i in profiles], total


async def remove_friend(user_id: str, friend_id: str) -> None:
    """Both sides of the friendship go; the messages stay (README, "Friends")."""
    if parse_user_id(friend_id) is None:
        raise FriendsError("not_friends", "This user is not your friend")
    result = await Friendship.get_pymongo_collection().delete_many({"pair": {"$eq": pair_key(user_id, friend_id)}})
    if result.deleted_count == 0:
        raise FriendsError("not_friends", "This user is not your friend")
