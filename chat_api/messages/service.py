"""Direct messages between friends: sending (stored, published, summarised) and the history; no HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import DESCENDING, UpdateMany, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from chat_api.events.service import publish
from chat_api.files.service import file_url_exists
from chat_api.friends.models import Friendship, pair_key
from chat_api.friends.service import canonical_id, friendship, user_exists
from chat_api.messages.models import DirectMessage
from chat_api.messages.schemas import DirectMessageIn, MessageIn, MessagePublic
from chat_api.users.service import utc_now

# How long the request that stored a message has to deliver it before a retry may take over.
DELIVERY_LEASE_MS = 10_000


class MessageError(Exception):
    """A rule of direct messages refused the operation; `reason` says which."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """What a conversation shows of its newest message (stored on Friendship and Group)."""
    return {
        "id": doc["key"],
        "from_id": doc["from_id"],
        "msg": doc["msg"],
        "msg_type": doc["msg_type"],
        "created_at": doc["created_at"],
    }


async def check_recipient(from_id: str, to_id: str) -> None:
    """404 for no such user, 403 for someone who is not a friend (one more lookup, on refusal only)."""
    if await friendship(from_id, to_id) is not None:
        return
    if await user_exists(to_id):
        raise MessageError("not_friends", "You can only send messages to your friends")
    raise MessageError("unknown_user", "User not found")


async def send_message(from_id: str, body: DirectMessageIn) -> tuple[MessagePublic, bool]:
    """Store, publish and summarise a message; the message, and whether it is new (False: a retry)."""
    to_id = canonical_id(body.to_id)
    if to_id is None:
        raise MessageError("unknown_user", "User not found")
    if to_id == from_id:
        raise MessageError("self", "You cannot send a message to yourself")
    file_check = file_url_exists(body.msg) if body.msg_type != "txt" else None
    if file_check is None:
        await check_recipient(from_id, to_id)
    else:
        _, file_found = await asyncio.gather(check_recipient(from_id, to_id), file_check)
        if not file_found:
            raise MessageError("no_file", f"A {body.msg_type} message must be the /api/files/<id> URL of an upload")
    doc = new_message_doc(from_id, body, pair=pair_key(from_id, to_id), to_id=to_id)
    collection = DirectMessage.get_pymongo_collection()
    try:
        # Stored first: from here on the message exists, and a retry with the same
        # client_msg_id finds it through the unique client_key instead of storing a copy.
        await collection.insert_one(doc)
    except DuplicateKeyError:
        original = await collection.find_one({"client_key": {"$eq": doc["client_key"]}})
        if original is None:  # the clash was not on client_key: not a retry
            raise
        if (original["to_id"], original["msg"], original["msg_type"]) != (to_id, body.msg, body.msg_type):
            raise MessageError("reused_id", "This client_msg_id was already used for another message") from None
        if original.get("seq") is None and await take_over_delivery(DirectMessage.get_pymongo_collection(), original):
            # The first attempt stopped before it was delivered: deliver it now.
            original["seq"] = await deliver(original)
        return MessagePublic.from_stored(original), False
    doc["seq"] = await deliver(doc)
    return MessagePublic.from_stored(doc), True


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def new_message_doc(from_id: str, body: MessageIn, **target: str) -> dict[str, Any]:
    """A direct or group message as stored (`target`: its pair and `to_id`, or its `group_id`), not yet
    delivered: the storing request holds the delivery lease."""
    oid = ObjectId()
    key = str(oid)
    now = utc_now()
    return {
        "_id": oid,
        **target,
        "from_id": from_id,
        "msg": body.msg,
        "msg_type": body.msg_type,
        "key": key,
        "client_key": f"{from_id}:{body.client_msg_id}" if body.client_msg_id is not None else key,
        "client_msg_id": body.client_msg_id,
        "created_at": now,
        "seq": None,
        "deliver_by_ms": epoch_ms(now) + DELIVERY_LEASE_MS,
    }


async def take_over_delivery(collection: AsyncCollection[dict[str, Any]], original: Mapping[str, Any]) -> bool:
    """Whether this retry now delivers a stored, undelivered message: only once the storing request's
    lease has run out (it may still be delivering), and only one of several concurrent retries (the
    one whose conditional write matches)."""
    lease = original.get("deliver_by_ms")
    now = epoch_ms(utc_now())
    if lease is not None and lease > now:
        return False
    claim = {"_id": original["_id"], "seq": None, "deliver_by_ms": lease}
    result = await collection.update_one(claim, {"$set": {"deliver_by_ms": now + DELIVERY_LEASE_MS}})
    return result.modified_count == 1


async def deliver(doc: dict[str, Any]) -> int:
    """Publish a stored message, update both sides' conversation, then mark it delivered.

    `seq` is written last, so a message without one is redone by a retry once the lease of the
    request that stored it has run out: after a crash between publishing and `seq`, the event
    goes out twice (same message id; clients drop the copy) and the recipient's unread count
    counts it twice. Nothing is lost.
    """
    data = {"message": MessagePublic.from_stored(doc).model_dump(mode="json")}
    seq = await publish("message", [doc["from_id"], doc["to_id"]], data)
    key = doc["key"]
    last = {"$set": {"last_message": summary(doc), "last_key": key}}
    await Friendship.get_pymongo_collection().bulk_write(
        [
            # Only ever forwards: of two messages sent at once, the later key stays the summary.
            # Two updates rather than one `$or` (no last_key yet, or an older one): nx-27017
            # answers `$or` beside other conditions wrongly (README, "The store").
            UpdateMany({"pair": {"$eq": doc["pair"]}, "last_key": {"$eq": None}}, last),
            UpdateMany({"pair": {"$eq": doc["pair"]}, "last_key": {"$lt": key}}, last),
            UpdateOne(
                {"owner_id": {"$eq": doc["to_id"]}, "friend_id": {"$eq": doc["from_id"]}}, {"$inc": {"unread": 1}}
            ),
            # The sender has read their own message.
            UpdateOne(
                {"owner_id": {"$eq": doc["from_id"]}, "friend_id": {"$eq": doc["to_id"]}, "read_key": {"$lt": key}},
                {"$set": {"read_key": key}},
            ),
        ],
        ordered=False,
    )
    await DirectMessage.get_pymongo_collection().update_one({"_id": doc["_id"]}, {"$set": {"seq": seq}})
    return seq


def history_query(pair: str, before: str | None) -> dict[str, Any]:
    """The filter of a history page; `$eq` spelled out so nx-27017 uses the (pair, key) index."""
    query: dict[str, Any] = {"pair": {"$eq": pair}}
    if before is not None:
        query["key"] = {"$lt": before}
    return query


async def history(me: str, from_id: str, to_id: str, before: str | None, limit: int) -> list[MessagePublic]:
    """A page of the conversation between `from_id` and `to_id`, newest first, older than `before`."""
    first, second = canonical_id(from_id), canonical_id(to_id)
    if first is None or second is None:
        raise MessageError("unknown_user", "User not found")
    from_id, to_id = first, second
    if me not in (from_id, to_id):
        raise MessageError("not_participant", "Only the two participants may read a conversation")
    other = to_id if from_id == me else from_id
    if other == me:
        raise MessageError("self", "A conversation is between two different users")
    cursor = (
        DirectMessage.get_pymongo_collection()
        .find(history_query(pair_key(me, other), before.lower() if before else None))
        .sort("key", DESCENDING)
        .limit(limit)
    )
    docs = await cursor.to_list()
    if not docs and before is None and not await user_exists(other):
        # Checked only when there is nothing to show: a page of messages proves the user existed.
        raise MessageError("unknown_user", "User not found")
    return [MessagePublic.from_stored(doc) for doc in docs]
