"""The seed's chat data: friendships, direct conversations, groups and their messages among demo users.

Plain documents in bulk, built by the same builders as the chat routes use (each package's models.py),
checked against the Beanie models by tests/test_scripts.py; no events, since seeded history has nobody to
deliver to.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from chat_api.friends.models import (
    DirectConversation,
    Friendship,
    new_direct_conversation_doc,
    new_friendship_docs,
    pair_key,
)
from chat_api.groups.models import (
    Group,
    GroupMember,
    GroupMessage,
    GroupPin,
    Identity,
    new_group_doc,
    new_member_doc,
    new_pin_doc,
)
from chat_api.messages.models import DirectMessage, MessageTerm, message_summary, new_message_doc, new_term_docs

LINES = (
    "Hi! How are you?",
    "Fine, thanks. And you?",
    "Busy week, but good.",
    "Lunch tomorrow?",
    "Sure, 12:30 at the usual place.",
    "See you there!",
)


@dataclass(frozen=True)
class ChatPlan:
    friends: int = 2  # each chat user befriends the next `friends` ones (so has twice as many friends)
    messages: int = 6  # per direct conversation and per group
    group_size: int = 8  # consecutive chat users per group: a lord, an admin, the rest plain users


@dataclass
class ChatCounts:
    friendships: int = 0  # pairs (two documents each)
    direct_messages: int = 0
    groups: int = 0
    members: int = 0
    group_messages: int = 0

    def __str__(self) -> str:
        return (
            f"{self.friendships:,} friendships, {self.direct_messages:,} direct messages, "
            f"{self.groups:,} groups with {self.members:,} members and {self.group_messages:,} messages"
        )


class Clock:
    """Message times one millisecond apart, in the order the messages' ids (their keys) are made,
    ending now: history and keys agree, and nothing is dated in the future."""

    def __init__(self, now: datetime, total: int):
        self.next = now - timedelta(milliseconds=total)

    def tick(self) -> datetime:
        self.next += timedelta(milliseconds=1)
        return self.next


def new_message(clock: Clock, from_id: str, msg: str, n: int, **where: str) -> dict[str, Any]:
    return new_message_doc(where, from_id, msg, n=n, created_at=clock.tick())


def friend_pairs(user_ids: list[str], friends: int) -> Iterator[tuple[str, str]]:
    """Each user with the next `friends` ones around a ring, each pair once."""
    seen: set[str] = set()
    count = len(user_ids)
    for i in range(count):
        for step in range(1, min(friends, count - 1) + 1):
            a, b = user_ids[i], user_ids[(i + step) % count]
            if (key := pair_key(a, b)) not in seen:
                seen.add(key)
                yield a, b


def conversation(
    clock: Clock, a: str, b: str, count: int, now: datetime, muted: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """`count` messages between a and b numbered 1 to `count`, their two Friendship documents and the
    pair's counter: each side has read all but the last message, which is unread by its recipient. The third
    message replies to the second, b reacts to the first, and `muted` mutes the conversation on a's side."""
    pair = pair_key(a, b)
    messages = []
    for index in range(count):
        sender, recipient = (a, b) if index % 2 == 0 else (b, a)
        messages.append(new_message(clock, sender, LINES[index % len(LINES)], index + 1, pair=pair, to_id=recipient))
    if count >= 3:
        # Some of what issue 13 added: a reply (the third message answers the second) and a reaction.
        messages[2]["reply_to"] = messages[1]["key"]
        messages[0]["reactions"] = [{"emoji": "👍", "users": [b]}]
    friendships = new_friendship_docs(a, b, now)
    friendships[0]["muted"] = muted
    for doc in friendships:
        if messages:
            last = messages[-1]
            unread = last["to_id"] == doc["owner_id"]
            doc.update(last_message=message_summary(last), message_n=count, read_n=count - 1 if unread else count)
    return messages, friendships, new_direct_conversation_doc(pair, count)


def group(
    clock: Clock, members: list[str], number: int, count: int, now: datetime
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """A group of `members` (the first its lord, the second an admin) with `count` messages, read by
    every member but the newest, which only its sender has read, and its pins: the lord pinned the first
    message, which the second answers and other members reacted to."""
    fields = {"group_name": f"Demo group {number}", "group_desc": "Seeded by scripts.seed", "group_avatar": None,
              "group_placard": None}  # fmt: skip
    doc = new_group_doc(fields, members[0], now)
    group_id = str(doc["_id"])
    messages = [
        new_message(clock, members[i % len(members)], LINES[i % len(LINES)], i + 1, group_id=group_id)
        for i in range(count)
    ]
    pins = []
    if len(messages) >= 2:
        messages[1]["reply_to"] = messages[0]["key"]
        messages[0]["reactions"] = [{"emoji": "🎉", "users": members[1:3]}]
        pins.append(new_pin_doc(group_id, messages[0]["key"], 0, members[0], messages[-1]["created_at"]))
    # Created, and joined by everyone, when its first message was sent: members read (and search) from joining on.
    if messages:
        now = messages[0]["created_at"]
        doc["created_at"] = now
    last = messages[-1] if messages else None
    doc.update(last_n=count)
    if last is not None:
        doc.update(last_message=message_summary(last), message_n=count)
    identities: list[Identity] = ["lord", "admin"]
    member_docs = []
    for index, user_id in enumerate(members):
        read_n = 0
        if last is not None:
            read_n = count if last["from_id"] == user_id else count - 1
        identity: Identity = identities[index] if index < 2 else "user"
        member_docs.append(new_member_doc(group_id, user_id, identity, now, read_n))
    return doc, member_docs, messages, pins


class Batches:
    """Documents per collection, inserted in batches as they accumulate."""

    def __init__(self, db: AsyncDatabase[Any], batch: int):
        self.db, self.batch = db, batch
        self.pending: dict[str, list[dict[str, Any]]] = {}

    async def add(self, collection: str, documents: list[dict[str, Any]]) -> None:
        pending = self.pending.setdefault(collection, [])
        pending.extend(documents)
        if len(pending) >= self.batch:
            await self.flush(collection)

    async def flush(self, collection: str | None = None) -> None:
        for name in [collection] if collection else list(self.pending):
            if self.pending.get(name):
                await self.db[name].insert_many(self.pending[name], ordered=False)
                self.pending[name] = []


async def seed_chat(
    db: AsyncDatabase[Any], user_ids: list[str], plan: ChatPlan, now: datetime, batch: int
) -> ChatCounts:
    counts = ChatCounts()
    pairs = list(friend_pairs(user_ids, plan.friends))
    size = plan.group_size
    blocks = [user_ids[i : i + size] for i in range(0, len(user_ids), size)] if size >= 2 else []
    groups = [members for members in blocks if len(members) >= 2]  # a group of one is no chat
    clock = Clock(now, (len(pairs) + len(groups)) * plan.messages)
    out = Batches(db, batch)
    models = (Friendship, DirectConversation, DirectMessage, Group, GroupMember, GroupMessage)
    names = {model: model.Settings.name for model in models}
    for number, (a, b) in enumerate(pairs):
        # Every third conversation muted on one side, so the demo shows `muted` and /conversations/unread's split.
        messages, friendships, counter = conversation(clock, a, b, plan.messages, now, muted=number % 3 == 0)
        await out.add(names[DirectMessage], messages)
        await out.add(MessageTerm.Settings.name, [posting for m in messages for posting in new_term_docs(m)])
        await out.add(names[Friendship], friendships)
        if messages:
            await out.add(names[DirectConversation], [counter])
        counts.friendships += 1
        counts.direct_messages += len(messages)
    for number, members in enumerate(groups, start=1):
        doc, member_docs, messages, pins = group(clock, members, number, plan.messages, now)
        await out.add(names[Group], [doc])
        await out.add(GroupPin.Settings.name, pins)
        await out.add(names[GroupMember], member_docs)
        await out.add(names[GroupMessage], messages)
        await out.add(MessageTerm.Settings.name, [posting for m in messages for posting in new_term_docs(m)])
        counts.groups += 1
        counts.members += len(member_docs)
        counts.group_messages += len(messages)
    await out.flush()
    return counts
