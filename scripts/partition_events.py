"""`python -m scripts.partition_events`: move an event log from before issue 12 to the partitioned one.

Before issue 12 every event took the next number of one global sequence (`seq`, unique) and listed its
recipients. From issue 12 on, events are numbered per partition (`p`, `seq`) from counters. This script:
1. starts every partition's counter (and the signals partition's) above the highest old number, so a
   client's old `last_seq` is never mistaken for a new one: it gets `resync_required` and refetches;
2. drops the old indexes (`seq_1` unique, `recipients_1_seq_1`), which would refuse the new numbers;
3. deletes the old events (those without `p`): they are a cache for resume, kept 7 days at most.
Idempotent (a second run changes nothing). Run it with the web dynos stopped, before starting this
version on an old database; docs/operations.md, "Upgrading a deployment from before issue 12".

`--repartition`, after changing EVENT_PARTITIONS (which moves users to other partitions): every counter starts
above every number ever given and every stored event is deleted, so every client resyncs once instead of
resuming in a stream that is no longer its own.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from chat_api.config import Settings, settings_or_exit
from chat_api.events.models import SIGNALS_PARTITION, Event, EventCounter
from scripts._store import database

OLD_INDEXES = ({"seq": 1}, {"recipients": 1, "seq": 1})
OLD_FORMAT = {"p": {"$exists": False}}


async def migrate(db: AsyncDatabase[dict[str, Any]], partitions: int, *, repartition: bool = False) -> str:
    events, counters = db[Event.Settings.name], db[EventCounter.Settings.name]
    newest = await events.find_one(OLD_FORMAT, {"seq": 1}, sort=[("seq", DESCENDING)])
    floor = int(newest["seq"]) if newest else 0
    if repartition:
        highest = await counters.find_one({}, {"seq": 1}, sort=[("seq", DESCENDING)])
        floor = max(floor, int(highest["seq"]) if highest else 0)
    if floor:
        for partition in [*range(partitions), SIGNALS_PARTITION]:
            await counters.update_one({"_id": partition}, {"$max": {"seq": floor}}, upsert=True)
    dropped = []
    for name, spec in (await events.index_information()).items():
        if dict(spec["key"]) in OLD_INDEXES:
            await events.drop_index(name)
            dropped.append(name)
    deleted = (await events.delete_many({} if repartition else OLD_FORMAT)).deleted_count
    return (
        f"counters of {partitions} partition(s) start above {floor:,}; "
        f"dropped {len(dropped)} old index(es); deleted {deleted:,} old event(s)"
    )


async def run(settings: Settings, *, repartition: bool) -> int:
    async with database(settings) as db:
        print(await migrate(db, settings.partitions, repartition=repartition))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.partition_events", description=__doc__)
    parser.add_argument(
        "--repartition", action="store_true", help="after changing EVENT_PARTITIONS: every client resyncs once"
    )
    args = parser.parse_args(argv)
    return asyncio.run(run(settings_or_exit("scripts.partition_events"), repartition=args.repartition))


if __name__ == "__main__":
    sys.exit(main())
