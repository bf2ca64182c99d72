"""Friend requests and friendships: the rules; raises domain errors, never HTTP ones."""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo.errors import DuplicateKeyError

from chat_api.blocks import repository as blocks
from chat_api.common.clock import utc_now
from chat_api.common.errors import Conflict, Forbidden, Invalid, NotFound, UserNotFound
from chat_api.common.ids import canonical_id, parse_object_id
from chat_api.events.service import publish
from chat_api.friends import repository
from chat_api.friends.models import new_request_doc, pair_key
from chat_api.friends.schemas import FriendRequestPublic, WaitingRequest
from chat_api.users import repository as users
from chat_api.users.schemas import UserPublic

REQUEST_NOT_FOUND = "Friend request not found"
NOT_YOUR_FRIEND = "This user is not your friend"
ALREADY_ANSWERED = "This friend request was already answered"


async def send_request(from_id: str, to_id: str, verify_data: str) -> str:
    """Store a waiting request and tell the recipient; the new request's id."""
    canonical = canonical_id(to_id)
    if canonical is None:
        raise UserNotFound
    to_id = canonical
    if to_id == from_id:
        raise Invalid("You cannot send a friend request to yourself")
    exists, friends, blocked = await asyncio.gather(
        users.user_exists(to_id), repository.are_friends(from_id, to_id), blocks.blocks_user(to_id, from_id)
    )
    if not exists:
        raise UserNotFound
    if friends:
        raise Conflict("You are already friends")
    if blocked:
        # Not "blocked": a block is not told to the one it keeps away (docs/decisions.md, "Blocks").
        raise Forbidden("You cannot send this user a friend request")
    doc = new_request_doc(from_id, to_id, verify_data, utc_now())
    try:
        # The unique pending_key decides between two requests sent at once, in either direction.
        await repository.insert_request(doc)
    except DuplicateKeyError:
        raise Conflict("A friend request between you is already waiting") from None
    await publish("friend_request", [to_id], {"request": request_json(doc)})
    return str(doc["_id"])


def request_json(doc: dict[str, Any]) -> dict[str, Any]:
    return FriendRequestPublic.from_stored(doc).model_dump(mode="json")


async def waiting_requests(user_id: str, limit: int, offset: int) -> tuple[list[WaitingRequest], int]:
    """Waiting requests to and from `user_id`, newest first, each with the other user's profile, and how many in all."""
    merged, total = await repository.waiting_requests(user_id, limit, offset)
    profiles = await users.public_users(doc["from_id"] if doc["to_id"] == user_id else doc["to_id"] for doc in merged)
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
    return page, total


async def answer_request(user_id: str, request_id: str, status: str) -> None:
    """Agree to or refuse a waiting request sent to `user_id`."""
    oid = parse_object_id(request_id)
    doc = None if oid is None else await repository.find_request(oid)
    if oid is None or doc is None:
        raise NotFound(REQUEST_NOT_FOUND)
    if doc["to_id"] != user_id:
        raise Forbidden("Only the recipient may answer a friend request")
    if doc["status"] != "waiting":
        raise Conflict(ALREADY_ANSWERED)
    created = []
    if status == "agree":
        # Friendships first: a crash before the status update below leaves a request still
        # waiting beside a friendship, and answering it again completes it.
        # Read up to the pair's last number: friends once before continue their numbering, and
        # what they said then is history, not unread.
        read_n = await repository.last_number(pair_key(doc["from_id"], doc["to_id"]))
        created = await repository.insert_friendship(doc["from_id"], doc["to_id"], utc_now(), read_n)
    now = utc_now()
    if not await repository.close_request(oid, status, now):
        if created:
            # This agree lost to a refuse given at the same moment: undo what it alone created.
            await repository.delete_friendships(created)
        raise Conflict(ALREADY_ANSWERED)
    answered = {**doc, "status": status, "answered_at": now, "pending_key": str(oid)}
    await publish("friend_request", [doc["from_id"], doc["to_id"]], {"request": request_json(answered)})


async def list_friends(user_id: str, limit: int, offset: int) -> tuple[list[UserPublic], int]:
    """My friends' public profiles (with their presence flag) in the order they became friends."""
    ids, total = await repository.friends_page(user_id, limit, offset)
    profiles = await users.public_users(ids)
    return [profiles[i] for i in ids if i in profiles], total


async def remove_friend(user_id: str, friend_id: str) -> None:
    """Both sides of the friendship go; the messages stay (docs/api.md, "Friends")."""
    canonical = canonical_id(friend_id)
    if canonical is None or await repository.delete_pair(pair_key(user_id, canonical)) == 0:
        raise NotFound(NOT_YOUR_FRIEND)
