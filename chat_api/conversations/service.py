"""My conversations with friends and groups, and marking them read; no HTTP."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chat_api.common.clock import stored_datetime
from chat_api.common.errors import Forbidden, UserNotFound
from chat_api.common.ids import canonical_id
from chat_api.conversations.schemas import Conversation, LastMessage, UnreadTotals
from chat_api.events.service import publish
from chat_api.friends import repository as friends
from chat_api.groups import repository as groups
from chat_api.groups import service as group_service
from chat_api.messages.repository import direct_messages
from chat_api.users import repository as users

# The name a conversation with a deleted account shows (the placeholder of docs/api.md, "Delete your account").
DELETED_ACCOUNT_NAME = "Deleted account"
# The sort time of a conversation without a message (not listed: only groups have none, and they
# sort by their creation).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Entry:
    """A conversation before its page is chosen: enough to sort it, the rest fetched for the page only."""

    type: str
    id: str
    # When its newest message was numbered (its `created_at`), else when the group was created: the
    # list's order, to the millisecond, never an ObjectId's seconds.
    sort_time: datetime
    doc: dict[str, Any]
    read_n: int = 0
    # The number of its newest delivered message (the summary's), and whether I muted it.
    newest_n: int = 0
    muted: bool = False
    mentioned: bool = False


def last_time(doc: dict[str, Any]) -> datetime | None:
    last = doc.get("last_message")
    return stored_datetime(last["created_at"]) if last else None


async def entries_of(me: str) -> list[Entry]:
    """All my conversations, unsorted: my friendships' sides that show a message and my memberships (read
    together), then my groups (one `$in` on `_id`, only if I have any): two round trips, three commands."""
    friend_docs, memberships = await asyncio.gather(friends.conversations_of(me), groups.memberships_of(me))
    entries = [
        Entry(
            "user",
            doc["friend_id"],
            last_time(doc) or EPOCH,
            doc,
            int(doc.get("read_n", 0)),
            int(doc.get("message_n", 0)),
            bool(doc.get("muted", False)),
        )
        for doc in friend_docs
    ]
    if memberships:
        mine = {m["group_id"]: m for m in memberships}
        projection = {
            "group_name": 1, "group_avatar": 1, "created_at": 1, "last_message": 1, "message_n": 1, "all_mention_n": 1
        }  # fmt: skip
        for group in await groups.groups_by_ids(list(mine), projection):
            group_id = str(group["_id"])
            membership = mine[group_id]
            sort_time = last_time(group) or stored_datetime(group["created_at"])
            entries.append(
                Entry(
                    "group",
                    group_id,
                    sort_time,
                    group,
                    int(membership.get("read_n", 0)),
                    int(group.get("message_n", 0)),
                    bool(membership.get("muted", False)),
                    mentioned(membership, group),
                )
            )
    return entries


async def conversations(me: str, limit: int, offset: int) -> tuple[list[Conversation], int]:
    """My conversations, most recent first: friends I have messages with, and all my groups."""
    entries = await entries_of(me)
    # Ties (the same millisecond) by id, so that the pages of one listing never overlap.
    entries.sort(key=lambda entry: (entry.sort_time, entry.id), reverse=True)
    page = entries[offset : offset + limit]
    profiles, unread_counts = await asyncio.gather(
        users.public_users(entry.id for entry in page if entry.type == "user"),
        asyncio.gather(*(unread_count(entry, me) for entry in page)),
    )
    result = []
    for entry, count in zip(page, unread_counts, strict=True):
        last = entry.doc.get("last_message")
        last_message = LastMessage.model_validate(last) if last else None
        deleted = False
        if entry.type == "user":
            profile = profiles.get(entry.id)
            if profile is None:
                # The friend deleted their account: the conversation stays, read-only, under a placeholder.
                name, avatar, deleted = DELETED_ACCOUNT_NAME, None, True
            else:
                name, avatar = profile.username, profile.avatar
        else:
            name, avatar = entry.doc["group_name"], entry.doc.get("group_avatar")
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
                muted=entry.muted,
                peer_read_up_to=entry.doc.get("peer_read_up_to") if entry.type == "user" else None,
                mentioned=entry.mentioned,
            )
        )
    return result, len(entries)


def mentioned(membership: dict[str, Any], group: dict[str, Any]) -> bool:
    """Whether a message after my read position calls me: by name (my `mention_n`) or everyone (the group's
    `all_mention_n`), unless I called everyone since myself (docs/decisions.md#mentions). No read per message."""
    called = max(int(membership.get("mention_n", 0)), int(group.get("all_mention_n", 0)))
    return called > max(int(membership.get("read_n", 0)), int(membership.get("mentions_seen_n", 0)))


async def unread_count(entry: Entry, me: str) -> int:
    """Exactly the messages after my read position that I did not send (one index range read), counted only
    when the conversation's newest delivered message is past my position: else none, with no command."""
    if entry.newest_n <= entry.read_n:
        return 0
    if entry.type == "user":
        return await direct_messages.unread_count(entry.doc["pair"], entry.read_n, me)
    return await groups.unread_count(entry.id, entry.read_n, me)


async def unread_totals(me: str) -> UnreadTotals:
    """My unread messages in all my conversations, split by mute, counted exactly as the list counts each
    (`unread_count`): 2 round trips (3 commands, 2 without groups) to find them, then one more with a count
    for each conversation whose newest message is past my read position, all sent together."""
    entries = await entries_of(me)
    counts = await asyncio.gather(*(unread_count(entry, me) for entry in entries))
    total = sum(count for entry, count in zip(entries, counts, strict=True) if not entry.muted)
    return UnreadTotals(total=total, muted=sum(counts) - total)


async def mark_user_read(me: str, friend_id: str) -> None:
    """Everything from this friend so far is read: my read position becomes the number of the
    conversation's newest delivered message (never moved back by a slower concurrent call), the friend's side
    learns it, and the friend gets a `read` event, when it moved (docs/api.md, "Read receipts")."""
    canonical = canonical_id(friend_id)
    if canonical is None:
        raise UserNotFound
    projection = {"message_n": 1, "read_n": 1, "last_message": 1, "friend_deleted": 1}
    doc = await friends.friendship(me, canonical, projection)
    if doc is None:
        if await users.user_exists(canonical):
            raise Forbidden("This user is not your friend")
        raise UserNotFound
    newest = int(doc.get("message_n", 0))
    last = doc.get("last_message")
    if newest <= int(doc.get("read_n", 0)) or last is None:
        return
    up_to = str(last["id"])  # the summary is the message numbered `message_n`: they move together
    if await friends.mark_read(me, canonical, newest, up_to) and not doc.get("friend_deleted", False):
        data = {"conversation": {"type": "user", "id": me}, "up_to": up_to}
        await publish("read", [canonical], data)


async def mark_group_read(me: str, group_id: str) -> None:
    """Everything in this group so far is read: my read_n becomes its newest delivered message's number."""
    await group_service.mark_read(group_id, me)


async def mute_user(me: str, friend_id: str, *, muted: bool) -> None:
    """Mute or unmute my conversation with a friend (or with a deleted account's, still mine): one write,
    and on refusal one more read, answered as marking it read answers."""
    canonical = canonical_id(friend_id)
    if canonical is None:
        raise UserNotFound
    if await friends.set_muted(me, canonical, muted):
        return
    if await users.user_exists(canonical):
        raise Forbidden("This user is not your friend")
    raise UserNotFound


async def mute_group(me: str, group_id: str, *, muted: bool) -> None:
    """Mute or unmute a group of mine (GroupNotFound, Forbidden as marking it read answers)."""
    await group_service.set_muted(group_id, me, muted)
