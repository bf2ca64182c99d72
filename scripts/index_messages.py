"""`python -m scripts.index_messages`: index for search the messages stored before issue 13.

Walks both message collections in `_id` order, a batch at a time, and writes each message's postings
(`new_term_docs`, the app's own builder) with `insert_many(ordered=False)`: the postings' `_id`s are
deterministic, so postings already there are duplicate keys, skipped. Idempotent: a second run inserts nothing,
and a run cut short is finished by the next. Safe beside a running app (a message sent meanwhile is indexed by
its send). Run it once after deploying this version on an old database; docs/operations.md, "Scripts".
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from chat_api.config import Settings, settings_or_exit
from chat_api.groups.models import GroupMessage
from chat_api.messages.models import DirectMessage, MessageTerm, new_term_docs
from scripts._store import database

BATCH = 1000
DUPLICATE_KEY = 11000


@dataclass
class Counts:
    messages: int = 0
    postings: int = 0  # inserted by this run (those already there are not counted)


async def index_collection(db: AsyncDatabase[Any], name: str, counts: Counts) -> None:
    messages, terms = db[name], db[MessageTerm.Settings.name]
    after: Any = None
    while True:
        query = {} if after is None else {"_id": {"$gt": after}}
        batch = await messages.find(query).sort("_id", ASCENDING).limit(BATCH).to_list()
        if not batch:
            return
        postings = [posting for doc in batch for posting in new_term_docs(doc)]
        inserted = len(postings)
        if postings:
            try:
                await terms.insert_many(postings, ordered=False)
            except BulkWriteError as error:
                errors = error.details.get("writeErrors", [])
                if any(write.get("code") != DUPLICATE_KEY for write in errors):
                    raise
                inserted -= len(errors)
        counts.messages += len(batch)
        counts.postings += inserted
        after = batch[-1]["_id"]


async def run(settings: Settings) -> Counts:
    counts = Counts()
    async with database(settings) as db:
        for model in (DirectMessage, GroupMessage):
            await index_collection(db, model.Settings.name, counts)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.index_messages", description=__doc__)
    parser.parse_args(argv)
    settings = settings_or_exit("scripts.index_messages")
    counts = asyncio.run(run(settings))
    print(counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
