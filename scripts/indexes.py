"""`python -m scripts.indexes create | drop | status`: manage the indexes declared on the documents."""

from __future__ import annotations

import argparse
import asyncio
import sys

from chat_api.config import Settings, settings_or_exit
from chat_api.store.indexes import create_indexes, drop_indexes, index_status
from scripts._store import database


async def run(action: str, settings: Settings) -> int:
    async with database(settings) as db:
        if action == "create":
            created = await create_indexes(db)
            for spec in created:
                print(f"created  {spec}")
            print(f"{len(created)} index(es) created" if created else "all declared indexes already exist")
            return 0
        if action == "drop":
            dropped = await drop_indexes(db)
            for spec in dropped:
                print(f"dropped  {spec}")
            print(f"{len(dropped)} index(es) dropped (_id indexes are never dropped)")
            return 0
        status = await index_status(db)
        for spec in status.present:
            print(f"present  {spec}")
        for spec in status.missing:
            print(f"missing  {spec}")
        for spec in status.extra:
            print(f"extra    {spec}")
        for spec in status.fixed:
            print(f"fixed    {spec} (built into the store, which create and drop cannot change)")
        if status.drift:
            print("drift: `create` adds what is missing; `drop` then `create` also removes what is extra")
            return 1
        print("in sync with the declared indexes")
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.indexes", description=__doc__)
    parser.add_argument(
        "action",
        choices=["create", "drop", "status"],
        help="create the missing declared indexes; drop every index but _id; "
        "status: list present/missing/extra, exit 1 on drift",
    )
    args = parser.parse_args(argv)
    settings = settings_or_exit("scripts.indexes")
    return asyncio.run(run(args.action, settings))


if __name__ == "__main__":
    sys.exit(main())
