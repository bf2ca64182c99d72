"""`python -m scripts.seed --users N`: insert N demo users who can log in with the demo password."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from chat_api.config import settings_or_exit
from chat_api.indexes import create_indexes
from chat_api.security import hash_password
from chat_api.users.models import User
from chat_api.users.schemas import UserCreate
from chat_api.users.service import new_user, utc_now
from chat_api.validation import MAX_INT64, Password
from scripts._store import database

DEMO_PASSWORD = "demo-password"
BATCH = 5000


class SeedError(Exception):
    """The seed cannot be done as asked; the message says why."""


def progress(done: int, total: int, started: float) -> None:
    width = 30
    filled = width * done // max(total, 1)
    rate = done / max(time.monotonic() - started, 1e-9)
    sys.stderr.write(f"\rseeding [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} ({rate:,.0f}/s)")
    sys.stderr.flush()


async def seed(db: AsyncDatabase[Any], count: int, password: str, rounds: int, batch: int = BATCH) -> range:
    """Insert `count` users with consecutive chat_ids after the highest one; return those chat_ids."""
    await create_indexes(db)  # so that the demo users obey the same uniqueness as registrations
    highest = await User.get_pymongo_collection().find_one({}, {"chat_id": 1}, sort=[("chat_id", DESCENDING)])
    first = (highest["chat_id"] if highest else 10_000) + 1
    if first + count - 1 > MAX_INT64:
        raise SeedError(
            f"no room for {count:,} consecutive chat_ids after the highest one in use ({first - 1}); "
            f"chat_ids stop at {MAX_INT64}"
        )
    chat_ids = range(first, first + count)
    # One hash for every demo user: bcrypt at cost 12 per user would take hours for 100,000.
    password_hash = hash_password(password, rounds)
    now = utc_now()
    started = time.monotonic()
    for start in range(0, count, batch):
        users = [
            new_user(
                UserCreate(
                    username=f"Demo {chat_id}",
                    password=password,
                    email=f"demo{chat_id}@example.com",
                    chat_id=chat_id,
                ),
                password_hash,
                now,
            )
            for chat_id in chat_ids[start : start + batch]
        ]
        try:
            await User.insert_many(users)
        except BulkWriteError as error:
            inserted = start + error.details.get("nInserted", 0)
            raise SeedError(
                f"stopped after {inserted:,} users: a chat_id or email of the batch was taken meanwhile "
                "(someone registered during the seed); run it again to add the rest after the new highest chat_id"
            ) from None
        progress(start + len(users), count, started)
    sys.stderr.write("\n")
    return chat_ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.seed", description=__doc__)
    parser.add_argument("--users", type=int, required=True, help="how many demo users to insert")
    parser.add_argument("--password", default=DEMO_PASSWORD, help=f"their password (default: {DEMO_PASSWORD})")
    args = parser.parse_args(argv)
    if args.users < 1:
        parser.error("--users must be at least 1")
    try:
        TypeAdapter(Password).validate_python(args.password)
    except ValidationError as error:
        parser.error(f"--password {error.errors()[0]['msg'].removeprefix('Value error, ')}")
    settings = settings_or_exit("scripts.seed")

    async def run() -> range:
        async with database(settings) as db:
            return await seed(db, args.users, args.password, settings.bcrypt_rounds)

    started = time.monotonic()
    try:
        chat_ids = asyncio.run(run())
    except SeedError as error:
        print(f"scripts.seed: {error}", file=sys.stderr)
        return 1
    print(
        f"inserted {len(chat_ids):,} users in {time.monotonic() - started:.1f} s: "
        f"chat_id {chat_ids[0]}..{chat_ids[-1]}, "
        f"email demo<chat_id>@example.com, password {args.password!r}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
