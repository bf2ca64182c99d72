"""My conversations with friends and groups, and marking them read; no HTTP."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId

from chat_api.common.clock import stored_datetime
from chat_api.common.errors import Forbidden, UserNotFound
from chat_api.common.ids import canonical_id
from chat_api.conversations.schemas import Conversation, LastMessage
from chat_api.friends import repository as friends
from chat_api.groups import repository as groups
from chat_api.groups import service as group_service
from chat_api.users import repository as users

# The name a conversation with a deleted account shows (the placeholder of docs/api.md, "Delete your account").
DELETED_ACCOUNT_NAME = "Deleted account"
# How often marking read retries when messages keep arriving between its read and its write.
READ_ATTEMPTS = 5


@dataclass
class Entry:
    """A conversation before its page is chosen: enough to sort it, the rest fetched for the page only."""

    type: str
    id: str
    sort_key: str  # an ObjectId's hex: the last message's key, else the group's creation time
    doc: dict[str, Any]
    read_key: str = ""


def time_key(moment: datetime | str) -> str:
    """A key that sorts with message keys (ObjectId hex strings start with their seconds)."""
    return str(ObjectId.from_datetime(stored_datetime(moment)))


async def conversations(me: str, limit: int, offset: int) -> tuple[list[Conversation], int]:
    """My conversations, most recent first: friends I have messages with, and all my groups."""
    friend_docs, memberships = await asyncio.gather(friends.conversations_of(me), groups.memberships_of(me))
    entries = [Entry("user", doc["friend_id"], doc["last_key"], doc) for doc in friend_docs]
    if memberships:
        read_keys = {m["group_id"]: m.get("read_key", "") for m in memberships}
        projection = {"group_name": 1, "group_avatar": 1, "created_at": 1, "last_message": 1, "last_key": 1}
        for group in await groups.groups_by_ids(list(read_keys), projection):
            group_id = str(group["_id"])
            sort_key = group.get("last_key") or time_key(group["created_at"])
            entries.append(Entry("group", group_id, sort_key, group, read_keys[group_id]))
    entries.sort(key=lambda entry: entry.sort_key, reverse=True)
    page = entries[offset : offset + limit]
    groups_on_page = [entry for entry in page if entry.type == "group"]
    profiles, unread_counts = await asyncio.gather(
        users.public_users(entry.id for entry in page if entry.type == "user"),
        asyncio.gather(*(groups.unread_count(entry.id, entry.read_key, me) for entry in groups_on_page)),
    )
    unread = {entry.id: count for entry, count in zip(groups_on_page, unread_counts, strict=True)}
    result = []
    for entry in page:
        last = entry.doc.get("last_message")
        last_message = LastMessage.model_validate(last) if last else None
        deleted = False
        if entry.type == "user":
            profile = profiles.get(entry.id)
            count = int(entry.doc.get("unread", 0))
            if profile is None:
                # The friend deleted their account: the conversation stays, read-only, under a placeholder.
                name, avatar, deleted = DELETED_ACCOUNT_NAME, None, True
            else:
                name, avatar = profile.username, profile.avatar
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
                deleted=deleted,
            )
        )
    return result, len(entries)


async def mark_user_read(me: str, friend_id: str) -> None:
    """Everything from this friend so far is read: unread 0, read_key the conversation's last key."""
    canonical = canonical_id(friend_id)
    if canonical is None:
        raise UserNotFound
    for _ in range(READ_ATTEMPTS):
        doc = await friends.friendship(me, canonical, {"last_key": 1})
        if doc is None:
            if await users.user_exists(canonical):
                raise Forbidden("This user is not your friend")
            raise UserNotFound
        if await friends.mark_read(doc["_id"], doc.get("last_key")):
            return
    # Messages keep arriving: the newest ones stay unread, which is true enough.


async def mark_group_read(me: str, group_id: str) -> None:
    """Everything in this group so far is read: my read_key becomes the group's last key."""
    await group_service.mark_read(group_id, me)
