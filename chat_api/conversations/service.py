"""My conversations with friends and groups, and marking them read; no HTTP."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId

from chat_api.conversations.schemas import Conversation, LastMessage
from chat_api.friends.models import Friendship
from chat_api.friends.service import friendship, public_users, user_exists
from chat_api.groups.models import Group, GroupMember, GroupMessage
from chat_api.users.models import as_utc
from chat_api.users.service import parse_user_id

# A group's unread count is counted up to here: enough for a badge ("999+"), and the cost of
# counting stays bounded however far behind a member is.
UNREAD_CAP = 999
# How often marking read retries when messages keep arriving between its read and its write.
READ_ATTEMPTS = 5


class ConversationError(Exception):
    """A rule refused the operation; `reason` says which."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Entry:
    """A conversation before its page is chosen: enough to sort it, the rest fetched for the page only."""

    type: str
    id: str
    sort_key: str  # an ObjectId's hex: the last message's key, else the group's creation time
    doc: dict[str, Any]
    read_key: str = ""


def stored_datetime(value: datetime | str) -> datetime:
    # nx-27017 keeps a datetime written by `$set` as a naive ISO string (README, "The store").
    return as_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)


def time_key(moment: datetime | str) -> str:
    """A key that sorts with message keys (ObjectId hex strings start with their seconds)."""
    return str(ObjectId.from_datetime(stored_datetime(moment)))


async def conversations(me: str, limit: int, offset: int) -> tuple[list[Conversation], int]:
    """My conversations, most recent first: friends I have messages with, and all my groups."""
    friends_query = {"owner_id": {"$eq": me}, "last_key": {"$ne": None}}
    friend_projection = {"friend_id": 1, "last_message": 1, "last_key": 1, "unread": 1}
    friend_docs, memberships = await asyncio.gather(
        Friendship.get_pymongo_collection().find(friends_query, friend_projection).to_list(),
        GroupMember.get_pymongo_collection().find({"user_id": {"$eq": me}}, {"group_id": 1, "read_key": 1}).to_list(),
    )
    entries = [Entry("user", doc["friend_id"], doc["last_key"], doc) for doc in friend_docs]
    if memberships:
        read_keys = {m["group_id"]: m.get("read_key", "") for m in memberships}
        group_ids = [ObjectId(group_id) for group_id in read_keys if ObjectId.is_valid(group_id)]
        projection = {"group_name": 1, "group_avatar": 1, "created_at": 1, "last_message": 1, "last_key": 1}
        groups = await Group.get_pymongo_collection().find({"_id": {"$in": group_ids}}, projection).to_list()
        for group in groups:
            group_id = str(group["_id"])
            sort_key = group.get("last_key") or time_key(group["created_at"])
            entries.append(Entry("group", group_id, sort_key, group, read_keys[group_id]))
    entries.sort(key=lambda entry: entry.sort_key, reverse=True)
    page = entries[offset : offset + limit]
    groups_on_page = [entry for entry in page if entry.type == "group"]
    profiles, unread_counts = await asyncio.gather(
        public_users(entry.id for entry in page if entry.type == "user"),
        asyncio.gather(*(group_unread(entry.id, entry.read_key, me) for entry in groups_on_page)),
    )
    unread = {entry.id: count for entry, count in zip(groups_on_page, unread_counts, strict=True)}
    result = []
    for entry in page:
        last = entry.doc.get("last_message")
        last_message = LastMessage.model_validate(last) if last else None
        if entry.type == "user":
            profile = profiles.get(entry.id)
            if profile is None:
                continue  # the friend's account was deleted
            name, avatar, count = profile.username, profile.avatar, int(entry.doc.get("unread", 0))
        else:
            name, avatar, count = entry.doc["group_name"], entry.doc.get("group_avatar"), unread[entry.id]
        updated_at = last_message.created_at if last_message else stored_datetime(entry.doc["created_at"])
        result.append(
            Conversation(
                type="user" if entry.type == "user" else "group",
                id=entry.id,
                name=name,
                avatar=avatar,
                last_message=last_message,
                unread=count,
                updated_at=updated_at,
            )
        )
    return result, len(entries)


def group_unread_query(group_id: str, read_key: str, me: str) -> dict[str, Any]:
    """Messages of a group after `read_key` from others; `$eq` so nx-27017 uses (group_id, key)."""
    return {"group_id": {"$eq": group_id}, "key": {"$gt": read_key}, "from_id": {"$ne": me}}


async def group_unread(group_id: str, read_key: str, me: str) -> int:
    # A capped find of ids rather than count_documents: nx-27017 counts in Python over the
    # documents (about 0.6 s for 5,000), while this find is an index range read.
    cursor = GroupMessage.get_pymongo_collection().find(group_unread_query(group_id, read_key, me), {"_id": 1})
    return len(await cursor.limit(UNREAD_CAP).to_list())


async def mark_user_read(me: str, friend_id: str) -> None:
    """Everything from this friend so far is read: unread 0, read_key the conversation's last key."""
    if parse_user_id(friend_id) is None:
        raise ConversationError("unknown_user", "User not found")
    collection = Friendship.get_pymongo_collection()
    for _ in range(READ_ATTEMPTS):
        doc = await friendship(me, friend_id, {"last_key": 1})
        if doc is None:
            if await user_exists(friend_id):
                raise ConversationError("not_friends", "This user is not your friend")
            raise ConversationError("unknown_user", "User not found")
        last_key = doc.get("last_key")
        # Only if no message arrived since the read: else its unread +1 would be wiped out
        # while read_key stays before it.
        result = await collection.update_one(
            {"_id": doc["_id"], "last_key": {"$eq": last_key}},
            {"$set": {"unread": 0, "read_key": last_key or ""}},
        )
        if result.matched_count == 1:
            return
    # Messages keep arriving: the newest ones stay unread, which is true enough.


async def mark_group_read(me: str, group_id: str) -> None:
    """Everything in this group so far is read: my read_key becomes the group's last key."""
    oid = parse_user_id(group_id)
    if oid is None:
        raise ConversationError("unknown_group", "Group not found")
    members = GroupMember.get_pymongo_collection()
    group, member = await asyncio.gather(
        Group.get_pymongo_collection().find_one({"_id": oid}, {"last_key": 1}),
        members.find_one({"group_id": {"$eq": group_id}, "user_id": {"$eq": me}}, {"read_key": 1}),
    )
    if group is None:
        raise ConversationError("unknown_group", "Group not found")
    if member is None:
        raise ConversationError("not_member", "Only members of the group may do this")
    last_key = group.get("last_key")
    if last_key and last_key > member.get("read_key", ""):
        # Only forwards: a slower concurrent call cannot move it back.
        await members.update_one(
            {"_id": member["_id"], "read_key": {"$lt": last_key}}, {"$set": {"read_key": last_key}}
        )
