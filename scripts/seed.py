"""`python -m scripts.seed --users N`: insert N demo users who can log in with the demo password, and
friendships, conversations and groups with messages among the first of them (`--chat-users`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from beanie import PydanticObjectId
from pydantic import TypeAdapter, ValidationError
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError
from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no type hints

from chat_api.common.clock import utc_now
from chat_api.common.fields import MAX_INT64, Password
from chat_api.config import settings_or_exit
from chat_api.security import hash_password
from chat_api.store.indexes import create_indexes
from chat_api.users import repository as users_repository
from chat_api.users.schemas import UserCreate
from chat_api.users.service import new_user
from scripts._chat_seed import ChatCounts, ChatPlan, seed_chat
from scripts._store import database

DEMO_PASSWORD = "demo-password"
BATCH = 5000
CHAT_USERS = 1000


class SeedError(Exception):
    """The seed cannot be done as asked; the message says why."""


async def seed(
    db: AsyncDatabase[Any], count: int, password: str, rounds: int, batch: int = BATCH
) -> tuple[range, list[str]]:
    """Insert `count` users with consecutive chat_ids after the highest one; return those chat_ids
    and the users' ids (hex), in chat_id order."""
    await create_indexes(db)  # so that the demo users obey the same uniqueness as registrations
    first = (await users_repository.highest_chat_id() or 10_000) + 1
    if first + count - 1 > MAX_INT64:
        raise SeedError(
            f"no room for {count:,} consecutive chat_ids after the highest one in use ({first - 1}); "
            f"chat_ids stop at {MAX_INT64}"
        )
    chat_ids = range(first, first + count)
    # One hash for every demo user: bcrypt at cost 12 per user would take hours for 100,000.
    password_hash = hash_password(password, rounds)
    now = utc_now()
    # Chosen here rather than by the store, so that the chat data can refer to the users.
    user_ids = [PydanticObjectId() for _ in chat_ids]
    with tqdm(total=count, desc="seeding", unit=" users", file=sys.stderr) as bar:
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
            for user, user_id in zip(users, user_ids[start : start + batch], strict=True):
                user.id = user_id
            try:
                await users_repository.insert_users(users)
            except BulkWriteError as error:
                inserted = start + error.details.get("nInserted", 0)
                raise SeedError(
                    f"stopped after {inserted:,} users: a chat_id or email of the batch was taken meanwhile "
                    "(someone registered during the seed); run it again to add the rest after the new highest chat_id"
                ) from None
            bar.update(len(users))
    return chat_ids, [str(user_id) for user_id in user_ids]


def non_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.seed", description=__doc__)
    parser.add_argument("--users", type=int, required=True, help="how many demo users to insert")
    parser.add_argument("--password", default=DEMO_PASSWORD, help=f"their password (default: {DEMO_PASSWORD})")
    chat = parser.add_argument_group("chat data, among the first --chat-users new users")
    chat.add_argument(
        "--chat-users",
        type=non_negative,
        default=CHAT_USERS,
        help=f"how many of the new users get friends, conversations and groups (default {CHAT_USERS:,})",
    )
    chat.add_argument("--no-chat", action="store_true", help="users only (same as --chat-users 0)")
    chat.add_argument(
        "--friends", type=non_negative, default=ChatPlan.friends, help="each befriends the next N (default %(default)s)"
    )
    chat.add_argument(
        "--messages",
        type=non_negative,
        default=ChatPlan.messages,
        help="messages per conversation and per group (default %(default)s)",
    )
    chat.add_argument(
        "--group-size", type=non_negative, default=ChatPlan.group_size, help="members per group (default %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.users < 1:
        parser.error("--users must be at least 1")
    try:
        TypeAdapter(Password).validate_python(args.password)
    except ValidationError as error:
        parser.error(f"--password {error.errors()[0]['msg'].removeprefix('Value error, ')}")
    settings = settings_or_exit("scripts.seed")
    chat_users = 0 if args.no_chat else min(args.chat_users, args.users)
    plan = ChatPlan(friends=args.friends, messages=args.messages, group_size=args.group_size)

    chat_took = 0.0

    async def run() -> tuple[range, ChatCounts | None]:
        nonlocal chat_took
        async with database(settings) as db:
            chat_ids, user_ids = await seed(db, args.users, args.password, settings.bcrypt_rounds)
            if not chat_users:
                return chat_ids, None
            chat_started = time.monotonic()
            counts = await seed_chat(db, user_ids[:chat_users], plan, utc_now(), BATCH)
            chat_took = time.monotonic() - chat_started
            return chat_ids, counts

    started = time.monotonic()
    try:
        chat_ids, counts = asyncio.run(run())
    except SeedError as error:
        print(f"scripts.seed: {error}", file=sys.stderr)
        return 1
    print(
        f"inserted {len(chat_ids):,} users in {time.monotonic() - started:.1f} s: "
        f"chat_id {chat_ids[0]}..{chat_ids[-1]}, "
        f"email demo<chat_id>@example.com, password {args.password!r}"
    )
    if counts is not None:
        print(f"and, among chat_id {chat_ids[0]}..{chat_ids[chat_users - 1]}, in {chat_took:.1f} s of it: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
