"""`python -m scripts.number_messages`: number the messages stored before issue 11, per conversation.

Each unnumbered message gets its conversation's next numbers in its old order (its key, an ObjectId's
hex), taken from the same counters as the app's (`direct_conversations`, `groups.last_n`); then each
friendship, group and membership gets its numbers from its old keys (`last_key`, `read_key`, `unread`),
which are removed. Idempotent: it only touches what has no number yet, so a second run changes nothing,
and a run cut short is finished by the next. Run it before starting this version on an old database
(the unique (conversation, n) indexes need every message numbered); docs/operations.md, "Scripts".
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from pymongo import DESCENDING, ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no type hints

from chat_api.config import Settings, settings_or_exit
from chat_api.friends.models import DirectConversation, Friendship, pair_ends
from chat_api.groups.models import Group, GroupMember, GroupMessage
from chat_api.messages.models import DirectMessage
from scripts._store import database

BATCH = 1000
UNNUMBERED = {"n": {"$exists": False}}
Collection = AsyncCollection[dict[str, Any]]


@dataclass
class Counts:
    direct_messages: int = 0
    group_messages: int = 0
    friendships: int = 0
    groups: int = 0
    members: int = 0

    def __str__(self) -> str:
        return (
            f"numbered {self.direct_messages:,} direct and {self.group_messages:,} group messages; "
            f"set the numbers of {self.friendships:,} friendships, {self.groups:,} groups and {self.members:,} members"
        )


async def unnumbered(messages: Collection, field: str) -> dict[str, list[tuple[str, ObjectId]]]:
    """The unnumbered messages of each conversation (`field` names it), in their old key order."""
    found: dict[str, list[tuple[str, ObjectId]]] = defaultdict(list)
    async for doc in messages.find(UNNUMBERED, {"_id": 1, field: 1, "key": 1}):
        found[doc[field]].append((doc.get("key") or str(doc["_id"]), doc["_id"]))
    for keyed in found.values():
        keyed.sort()
    return found


async def take_numbers(counters: Collection, counter_id: Any, count: int, *, upsert: bool) -> int | None:
    """Take `count` numbers at once from a counter (the app's own `$inc`; a pair's counter with the pair's
    two ids, as the app writes it): the first of them, or None if the counter's document is gone (a
    deleted group)."""
    ends = {"$set": pair_ends(counter_id)} if upsert else {}
    counter = await counters.find_one_and_update(
        {"_id": counter_id},
        {"$inc": {"last_n": count}, **ends},
        {"last_n": 1},
        upsert=upsert,
        return_document=ReturnDocument.AFTER,
    )
    return None if counter is None else int(counter["last_n"]) - count + 1


async def highest_number(messages: Collection, field: str, conversation: str) -> int:
    newest = await messages.find_one(
        {field: {"$eq": conversation}, "n": {"$gt": 0}}, {"n": 1}, sort=[("n", DESCENDING)]
    )
    return 0 if newest is None else int(newest["n"])


async def number_messages(db: AsyncDatabase[Any], bar: Any, direct: bool) -> int:
    """Number one collection's unnumbered messages; how many."""
    messages = db[(DirectMessage if direct else GroupMessage).Settings.name]
    field = "pair" if direct else "group_id"
    counters = db[(DirectConversation if direct else Group).Settings.name]
    numbered = 0
    for conversation, keyed in (await unnumbered(messages, field)).items():
        counter_id: Any = conversation if direct else ObjectId(conversation)
        first = await take_numbers(counters, counter_id, len(keyed), upsert=direct)
        if first is None:
            # A group deleted by a purge cut short: no route shows these, but the unique
            # (group_id, n) index needs them numbered too.
            first = await highest_number(messages, field, conversation) + 1
        writes = [UpdateOne({"_id": oid, **UNNUMBERED}, {"$set": {"n": first + i}}) for i, (_, oid) in enumerate(keyed)]
        for start in range(0, len(writes), BATCH):
            await messages.bulk_write(writes[start : start + BATCH], ordered=False)
            bar.update(len(writes[start : start + BATCH]))
        numbered += len(keyed)
    return numbered


async def number_of_key(messages: Collection, field: str, conversation: str, key: str | None) -> int:
    """The number of the newest message of a conversation at or before an old key (0: none)."""
    if not key:
        return 0
    query = {field: {"$eq": conversation}, "key": {"$lte": key}}
    doc = await messages.find_one(query, {"n": 1}, sort=[("n", DESCENDING)])
    return 0 if doc is None else int(doc["n"])


async def number_friendships(db: AsyncDatabase[Any], bar: Any) -> int:
    """Each side's `message_n` (its newest message) and `read_n`: exactly its old `unread` counter of
    messages from the friend stay unread (not its `read_key`, which the owner's own sends moved past
    messages still unread)."""
    friendships, messages = db[Friendship.Settings.name], db[DirectMessage.Settings.name]
    done = 0
    async for side in friendships.find({"message_n": {"$exists": False}}):
        newest = await highest_number(messages, "pair", side["pair"])
        read_n = newest
        unread = int(side.get("unread") or 0)
        if unread > 0:
            theirs = {"pair": {"$eq": side["pair"]}, "n": {"$gt": 0}, "from_id": {"$eq": side["friend_id"]}}
            oldest_unread = await messages.find_one(theirs, {"n": 1}, sort=[("n", DESCENDING)], skip=unread - 1)
            read_n = 0 if oldest_unread is None else int(oldest_unread["n"]) - 1
        await friendships.update_one(
            {"_id": side["_id"], "message_n": {"$exists": False}},
            {"$set": {"message_n": newest, "read_n": read_n}, "$unset": {"last_key": "", "unread": "", "read_key": ""}},
        )
        done += 1
        bar.update(1)
    return done


async def number_groups(db: AsyncDatabase[Any], bar: Any) -> tuple[int, int]:
    """Each group's `message_n` (and a `last_n` for one that has no message), each member's `read_n`."""
    groups, members, messages = db[Group.Settings.name], db[GroupMember.Settings.name], db[GroupMessage.Settings.name]
    done_groups = done_members = 0
    async for group in groups.find({"message_n": {"$exists": False}}, {"_id": 1, "last_n": 1}):
        newest = await highest_number(messages, "group_id", str(group["_id"]))
        await groups.update_one(
            {"_id": group["_id"], "message_n": {"$exists": False}},
            {
                "$set": {"message_n": newest, "last_n": max(int(group.get("last_n") or 0), newest)},
                "$unset": {"last_key": ""},
            },
        )
        done_groups += 1
        bar.update(1)
    async for member in members.find({"read_n": {"$exists": False}}, {"_id": 1, "group_id": 1, "read_key": 1}):
        read_n = await number_of_key(messages, "group_id", member["group_id"], member.get("read_key"))
        await members.update_one(
            {"_id": member["_id"], "read_n": {"$exists": False}},
            {"$set": {"read_n": read_n}, "$unset": {"read_key": ""}},
        )
        done_members += 1
        bar.update(1)
    return done_groups, done_members


async def count_work(db: AsyncDatabase[Any]) -> int:
    """What is left to number, for the progress bar's total (a scan each: this runs once)."""
    pending = [
        (DirectMessage, UNNUMBERED),
        (GroupMessage, UNNUMBERED),
        (Friendship, {"message_n": {"$exists": False}}),
        (Group, {"message_n": {"$exists": False}}),
        (GroupMember, {"read_n": {"$exists": False}}),
    ]
    counts = await asyncio.gather(*(db[model.Settings.name].count_documents(query) for model, query in pending))
    return sum(counts)


async def run(settings: Settings) -> Counts:
    counts = Counts()
    async with database(settings) as db:
        total = await count_work(db)
        with tqdm(total=total, desc="numbering", unit=" docs", file=sys.stderr) as bar:
            # Messages first: the conversations' numbers are read from them.
            counts.direct_messages = await number_messages(db, bar, direct=True)
            counts.group_messages = await number_messages(db, bar, direct=False)
            counts.friendships = await number_friendships(db, bar)
            counts.groups, counts.members = await number_groups(db, bar)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.number_messages", description=__doc__)
    parser.parse_args(argv)
    settings = settings_or_exit("scripts.number_messages")
    counts = asyncio.run(run(settings))
    print(counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
