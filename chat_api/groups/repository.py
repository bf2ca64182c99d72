"""Every query of `groups`, `group_members` and `group_messages`; other packages call these instead.

Group ids are ObjectIds in `groups._id` and hex strings everywhere else (members, messages,
events), because nx-27017 does not match ObjectIds outside `_id` (docs/store.md). Every filter on
an indexed field is written with `$eq`, the form that uses the index on nx-27017.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncCursor

from chat_api.common.pagination import count_matching
from chat_api.groups.models import Group, GroupMember, GroupMessage, GroupPin, Identity
from chat_api.messages.repository import MessageStore

# Large enough that a group's member ids come back in one reply (PyMongo's first batch is
# otherwise 101 documents, and each further batch is one more round trip).
MEMBER_BATCH = 100_000
Collection = AsyncCollection[dict[str, Any]]

group_messages = MessageStore(GroupMessage, "group_id")


def groups() -> Collection:
    return Group.get_pymongo_collection()


def members() -> Collection:
    return GroupMember.get_pymongo_collection()


def pins() -> Collection:
    return GroupPin.get_pymongo_collection()


def alive(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """A group document unless it is a deleted group's tombstone (docs/reliability.md#deleting-a-group)."""
    return None if doc is None or doc.get("purge_after_ms") is not None else doc


def with_tombstone(projection: dict[str, int] | None) -> dict[str, int] | None:
    """A projection that still shows whether the group is a tombstone."""
    return None if projection is None else {**projection, "purge_after_ms": 1}


def member_filter(group_id: str, user_id: str) -> dict[str, Any]:
    return {"group_id": {"$eq": group_id}, "user_id": {"$eq": user_id}}


# Groups


async def insert_group(doc: dict[str, Any]) -> None:
    await groups().insert_one(doc)


async def find_group(group_id: str, projection: dict[str, int] | None = None) -> dict[str, Any] | None:
    """The group, None if there is none or it is a deleted group's tombstone."""
    return alive(await groups().find_one({"_id": ObjectId(group_id)}, with_tombstone(projection)))


async def groups_by_ids(group_ids: list[str], projection: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """The groups with these ids, in one `$in` query on `_id` (indexed on both stores); malformed ids
    and deleted groups' tombstones are skipped."""
    oids = [ObjectId(group_id) for group_id in group_ids if ObjectId.is_valid(group_id)]
    docs = await groups().find({"_id": {"$in": oids}}, with_tombstone(projection)).to_list()
    return [doc for doc in docs if alive(doc) is not None]


async def set_group_fields(group_id: str, changes: dict[str, Any]) -> bool:
    result = await groups().update_one({"_id": ObjectId(group_id)}, {"$set": changes})
    return result.matched_count == 1


async def mark_deleted(group_id: str, purge_after_ms: int) -> bool:
    """Make the group a tombstone to be purged at `purge_after_ms`; False if it already is one (or is gone).

    `$eq: None` matches a missing field too (groups stored before tombstones existed), on both stores.
    """
    query = {"_id": ObjectId(group_id), "purge_after_ms": {"$eq": None}}
    result = await groups().update_one(query, {"$set": {"purge_after_ms": purge_after_ms}})
    return result.modified_count == 1


async def tombstones() -> list[dict[str, Any]]:
    """Every deleted group's tombstone (its id and purge time): one range read of `purge_after_ms_1`,
    which live groups (no such field) are not in the range of."""
    query = {"purge_after_ms": {"$gt": 0}}
    return await groups().find(query, {"_id": 1, "purge_after_ms": 1}).to_list()


async def delete_tombstone(group_id: str) -> None:
    await groups().delete_one({"_id": ObjectId(group_id), "purge_after_ms": {"$gt": 0}})


async def take_number(group_id: str) -> int | None:
    """The next number of the group's conversation, taken atomically from the group document's counter
    (one findAndModify); None if the group is gone or deleted."""
    group = await groups().find_one_and_update(
        {"_id": ObjectId(group_id), "purge_after_ms": {"$eq": None}},  # a deleted group's tombstone numbers nothing
        {"$inc": {"last_n": 1}},
        {"last_n": 1},
        return_document=ReturnDocument.AFTER,
    )
    return None if group is None else int(group["last_n"])


async def set_last_message(group_id: str, n: int, summary: dict[str, Any], *, mentions_all: bool = False) -> None:
    """Point the group at the message number `n` unless a newer one got there first (concurrent senders).

    `mentions_all`: the message calls everyone, so `all_mention_n` moves up to `n` in the same write; when a newer
    message got there first (a rare race), by one write of its own.
    """
    update: dict[str, Any] = {"$set": {"last_message": summary, "message_n": n}}
    if mentions_all:
        update["$max"] = {"all_mention_n": n}
    result = await groups().update_one({"_id": ObjectId(group_id), "message_n": {"$lt": n}}, update)
    if mentions_all and result.matched_count == 0:
        await groups().update_one({"_id": ObjectId(group_id)}, {"$max": {"all_mention_n": n}})


# Members


async def insert_member(doc: dict[str, Any]) -> None:
    """Raises DuplicateKeyError if the user is already a member (the unique (group_id, user_id))."""
    await members().insert_one(doc)


async def membership(group_id: str, user_id: str, projection: dict[str, int]) -> dict[str, Any] | None:
    return await members().find_one(member_filter(group_id, user_id), projection)


async def member_ids(group_id: str) -> list[str]:
    """The user ids of a group's members (hex), in one round trip whatever the group's size; the
    recipients of an event for the whole group (a group message, typing in a group)."""
    cursor = members().find({"group_id": {"$eq": group_id}}, {"user_id": 1, "_id": 0}).batch_size(MEMBER_BATCH)
    return [doc["user_id"] for doc in await cursor.to_list()]


async def memberships_of(user_id: str) -> list[dict[str, Any]]:
    """My memberships: each group's id, how far I have read it, whether I muted it, where I was last mentioned."""
    projection = {"group_id": 1, "read_n": 1, "muted": 1, "mention_n": 1, "mentions_seen_n": 1}
    return await members().find({"user_id": {"$eq": user_id}}, projection).to_list()


async def memberships_among(group_id: str, user_ids: list[str]) -> list[dict[str, Any]]:
    """The memberships of these users in the group (their `_id`, `user_id` and identity), in one read: a
    multi-point scan of `group_id_1_user_id_1` on MongoDB; nx-27017 walks the group's range of it (docs/store.md)."""
    query = {"group_id": {"$eq": group_id}, "user_id": {"$in": user_ids}}
    return await members().find(query, {"user_id": 1, "identity": 1}).to_list()


async def mark_mentioned(member_ids: list[ObjectId], n: int) -> None:
    """Raise the named members' `mention_n` to the message number `n` (one write, `$in` on `_id`; `$max`, so a
    slower concurrent send cannot lower it)."""
    await members().update_many({"_id": {"$in": member_ids}}, {"$max": {"mention_n": n}})


async def mark_mentions_seen(member_id: ObjectId, n: int) -> None:
    """The member called everyone with the message `n`: the group's calls up to it are seen by them."""
    await members().update_one({"_id": member_id}, {"$max": {"mentions_seen_n": n}})


async def members_since(group_id: str) -> list[dict[str, Any]]:
    """Every member of a group with when they joined and how far they have read, in one round trip whatever the
    group's size (the range of `group_id_1_user_id_1`): who has read a message (`/reads`)."""
    cursor = members().find(
        {"group_id": {"$eq": group_id}}, {"_id": 0, "user_id": 1, "joined_at": 1, "joined_n": 1, "read_n": 1}
    )
    return await cursor.batch_size(MEMBER_BATCH).to_list()


async def joined_groups(user_id: str) -> list[dict[str, Any]]:
    """My memberships: each group's id and when I joined it (what I may search: `user_id_1_group_id_1`)."""
    cursor = members().find({"user_id": {"$eq": user_id}}, {"_id": 0, "group_id": 1, "joined_at": 1})
    return await cursor.batch_size(MEMBER_BATCH).to_list()


def memberships_cursor(user_id: str, batch: int) -> AsyncCursor[dict[str, Any]]:
    """All my memberships (group, identity, since when) in group id order, `batch` at a time (the
    export): the prefix of (user_id, group_id)."""
    cursor = members().find({"user_id": {"$eq": user_id}}, {"group_id": 1, "identity": 1, "joined_at": 1, "_id": 0})
    return cursor.sort("group_id", ASCENDING).batch_size(batch)


async def my_memberships_page(user_id: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """A page of my memberships in the order the groups were created (ids grow with time), and how many in all."""
    mine = {"user_id": {"$eq": user_id}}
    cursor = members().find(mine, {"group_id": 1, "identity": 1, "_id": 0})
    cursor = cursor.sort("group_id", ASCENDING).skip(offset).limit(limit)
    page, total = await asyncio.gather(cursor.to_list(), count_matching(members(), mine))
    return page, total


async def members_page(group_id: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """A page of a group's members in the order of their user ids (the index's order), and how many in all."""
    of_group = {"group_id": {"$eq": group_id}}
    cursor = members().find(of_group, {"user_id": 1, "identity": 1, "joined_at": 1, "_id": 0})
    cursor = cursor.sort("user_id", ASCENDING).skip(offset).limit(limit)
    page, total = await asyncio.gather(cursor.to_list(), count_matching(members(), of_group))
    return page, total


async def remove_member(group_id: str, user_id: str, *, only_plain: bool) -> bool:
    """Remove a membership, never the lord's (`only_plain`: a plain user's only, in the same write)."""
    query: dict[str, Any] = {**member_filter(group_id, user_id), "identity": {"$ne": "lord"}}
    if only_plain:
        query["identity"] = {"$eq": "user"}
    result = await members().delete_one(query)
    return result.deleted_count == 1


async def set_identity(group_id: str, user_id: str, identity: Identity) -> bool:
    """Make a member an admin or a plain user (never touches the lord); False if not a member."""
    query = {**member_filter(group_id, user_id), "identity": {"$ne": "lord"}}
    result = await members().update_one(query, {"$set": {"identity": identity}})
    return result.matched_count == 1


async def mark_read(member_id: ObjectId, n: int) -> None:
    """Move a member's read position forward to the message number `n`; a slower concurrent call cannot move it back."""
    await members().update_one({"_id": member_id, "read_n": {"$lt": n}}, {"$set": {"read_n": n}})


async def set_muted(group_id: str, user_id: str, muted: bool) -> bool:
    """Mute or unmute a group for one member; False if they are not a member."""
    result = await members().update_one(member_filter(group_id, user_id), {"$set": {"muted": muted}})
    return result.matched_count == 1


async def delete_members(group_id: str) -> None:
    await members().delete_many({"group_id": {"$eq": group_id}})


async def delete_member(group_id: str, user_id: str) -> None:
    """Undo an add that raced the group's deletion."""
    await members().delete_one(member_filter(group_id, user_id))


# Messages (the shared queries are group_messages' MessageStore methods)


async def message_of(group_id: str, message_id: str, projection: dict[str, int] | None = None) -> dict[str, Any] | None:
    """A message of this group by its id; None if there is none, or it is another group's."""
    query = {"_id": ObjectId(message_id), "group_id": {"$eq": group_id}}
    return await group_messages.collection().find_one(query, projection)


async def messages_by_keys(group_id: str, keys: list[str]) -> list[dict[str, Any]]:
    """The group's messages with these ids, in one `$in` on `_id`, in no particular order."""
    query = {"_id": {"$in": [ObjectId(key) for key in keys]}, "group_id": {"$eq": group_id}}
    return await group_messages.collection().find(query).to_list()


async def unread_count(group_id: str, read_n: int, me: str) -> int:
    """Messages of a group after `read_n` from others, exactly (group_messages.unread_count): read from
    the member's own position, so a send writes nothing per member."""
    return await group_messages.unread_count(group_id, read_n, me)


async def delete_messages(group_id: str) -> None:
    await group_messages.collection().delete_many({"group_id": {"$eq": group_id}})


# Pins


async def pins_of(group_id: str) -> list[dict[str, Any]]:
    """A group's pins (at most MAX_PINS): the range of `group_id_1_message_key_1`."""
    return await pins().find({"group_id": {"$eq": group_id}}).to_list()


async def insert_pin(doc: dict[str, Any]) -> None:
    """Raises DuplicateKeyError if the message is pinned already or the slot is taken (the two unique indexes)."""
    await pins().insert_one(doc)


async def delete_pin(group_id: str, message_key: str) -> bool:
    """Unpin a message; False if it was not pinned."""
    result = await pins().delete_one({"group_id": {"$eq": group_id}, "message_key": {"$eq": message_key}})
    return result.deleted_count == 1


async def delete_pins(group_id: str) -> None:
    await pins().delete_many({"group_id": {"$eq": group_id}})


async def delete_message(message_id: ObjectId) -> None:
    """Undo a send that raced the group's deletion."""
    await group_messages.collection().delete_one({"_id": message_id})


# An account being deleted (groups.service.forget_account)


async def memberships_with_identity(user_id: str) -> list[dict[str, Any]]:
    """Every membership of a user: the group and the identity in it (`user_id_1_group_id_1`)."""
    cursor = members().find({"user_id": {"$eq": user_id}}, {"_id": 0, "group_id": 1, "identity": 1})
    return await cursor.batch_size(MEMBER_BATCH).to_list()


async def members_with_seniority(group_id: str) -> list[dict[str, Any]]:
    """Every member of a group with identity and joining time, in one round trip (`group_id_1_user_id_1`)."""
    cursor = members().find({"group_id": {"$eq": group_id}}, {"user_id": 1, "identity": 1, "joined_at": 1})
    return await cursor.batch_size(MEMBER_BATCH).to_list()


async def promote_to_lord(member_id: ObjectId) -> bool:
    """Make a membership the lord's; False if it is gone (the member left meanwhile)."""
    result = await members().update_one({"_id": member_id}, {"$set": {"identity": "lord"}})
    return result.matched_count == 1


async def set_lord(group_id: str, user_id: str) -> None:
    await groups().update_one({"_id": ObjectId(group_id)}, {"$set": {"lord_id": user_id}})


async def delete_membership(group_id: str, user_id: str) -> None:
    """Remove a membership whatever its identity (the lord's too: the account is being deleted)."""
    await members().delete_one(member_filter(group_id, user_id))


async def replace_last_message(group_id: str, n: int, summary: dict[str, Any]) -> None:
    """Put `summary` in place of the group's newest message if that is still the message numbered `n`."""
    query = {"_id": ObjectId(group_id), "message_n": {"$eq": n}}
    await groups().update_one(query, {"$set": {"last_message": summary}})
