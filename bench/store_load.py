"""Scenarios 9 and 10: the store commands an app process sends, as recorded inside it by bench/counting_server.py.

9. Idle: sockets open, no traffic; commands per process per second over a window (PyMongo command monitoring).
10. Concurrent senders: 16 clients, each posting direct messages to its own friend; the commands the store refused
    with a duplicate key (code 11000), per event stored.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bcrypt
import httpx
from bson import ObjectId
from pymongo import MongoClient
from websockets.asyncio.client import ClientConnection

from bench.delivery import open_sockets
from chat_api.friends.models import new_friendship_docs
from chat_api.security import create_token


@dataclass(frozen=True)
class Recorded:
    """What the server's processes recorded between two moments."""

    seconds: float
    processes: int  # processes that sent at least one command since they started
    commands: Counter[str]  # "<command> <collection>" -> count
    background: int  # of them, sent by background tasks
    duplicates: int  # writes refused with a duplicate key
    failed: Counter[str]  # other failures, by command
    events_stored: int  # documents inserted into the event log

    @property
    def total(self) -> int:
        return sum(self.commands.values())

    def per_process_per_second(self) -> float:
        return self.total / max(1, self.processes) / self.seconds

    def top(self, n: int = 6) -> str:
        return ", ".join(f"{name} {count}" for name, count in self.commands.most_common(n)) or "none"


def read_commands(log: Path, since: float, until: float) -> Recorded:
    """The lines of every `<log>.<pid>` file written between `since` and `until` (wall-clock seconds)."""
    commands: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    processes: set[str] = set()
    background = duplicates = events_stored = 0
    for path in log.parent.glob(log.name + ".*"):
        lines = path.read_text().splitlines()
        if lines:
            processes.add(path.suffix)
        for line in lines:
            at, kind, name, collection, count, in_background = line.split("\t")
            if not since <= float(at) < until:
                continue
            if kind == "started":
                commands[f"{name} {collection}".strip()] += 1
                background += int(in_background)
                if name == "insert" and collection == "events":
                    events_stored += int(count)
            elif kind == "duplicate":
                duplicates += int(count)
            else:
                failed[name] += 1
    return Recorded(until - since, len(processes), commands, background, duplicates, failed, events_stored)


def _password() -> str:
    return bcrypt.hashpw(b"not-used-here", bcrypt.gensalt(4)).decode()


def seed_pairs(uri: str, database: str, pairs: int) -> list[tuple[str, str]]:
    """2 x `pairs` users, each pair friends with each other only; (sender, recipient) ids."""
    now = datetime.now(UTC)
    password = _password()
    ids = [str(ObjectId()) for _ in range(2 * pairs)]
    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    try:
        db = client[database]
        db.users.insert_many(
            [
                {
                    "_id": ObjectId(user_id),
                    "chat_id": 800_000_000 + n,
                    "email": f"sender{n}@bench.example.com",
                    "username": f"sender{n}",
                    "password": password,
                    "register_at": now,
                    "birthday": now,
                    "flag": "offline",
                    "token_version": 0,
                }
                for n, user_id in enumerate(ids)
            ]
        )
        couples = [(ids[2 * n], ids[2 * n + 1]) for n in range(pairs)]
        db.friendships.insert_many([doc for a, b in couples for doc in new_friendship_docs(a, b, now)])
        return couples
    finally:
        client.close()


async def _drain(ws: ClientConnection, frames: Counter[str]) -> None:
    async for raw in ws:
        frames[json.loads(raw).get("type", "?")] += 1


@dataclass
class Idle:
    recorded: Recorded
    sockets: int
    open_at_end: int  # sockets still open when the window closed
    frames: Counter[str] = field(default_factory=Counter)  # what the idle sockets received in the window


async def _idle(base: str, tokens: list[str], settle: float, seconds: float, log: Path) -> Idle:
    sockets = await open_sockets(base, tokens)
    frames: Counter[str] = Counter()
    readers = [asyncio.create_task(_drain(ws, frames)) for ws in sockets]
    # The sockets' own opening (presence, groups) and the feed's fast pace after it are not idle.
    await asyncio.sleep(settle)
    frames.clear()
    since = time.time()
    await asyncio.sleep(seconds)
    until = time.time()
    window_frames = Counter(frames)
    still_open = sum(1 for ws in sockets if ws.close_code is None)
    for ws in sockets:
        await ws.close()
    for reader in readers:
        reader.cancel()
    return Idle(read_commands(log, since, until), len(sockets), still_open, window_frames)


def idle(base: str, user_ids: list[str], secret: str, settle: float, seconds: float, log: Path) -> Idle:
    tokens = ["Bearer " + create_token(user_id, 0, secret, 3600) for user_id in user_ids]
    return asyncio.run(_idle(base, tokens, settle, seconds, log))


@dataclass(frozen=True)
class Senders:
    recorded: Recorded
    sent: int  # messages answered 201
    wrong: Counter[int]  # other statuses, by status
    errors: int  # requests that got no answer


async def _senders(base: str, couples: list[tuple[str, str]], secret: str, seconds: float, log: Path) -> Senders:
    statuses: Counter[int] = Counter()
    errors = 0
    run = secrets.token_hex(4)  # a fresh client_msg_id per message of each run (a repeated one answers 200)
    limits = httpx.Limits(max_connections=len(couples), max_keepalive_connections=len(couples))
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:

        async def sender(n: int, me: str, friend: str, deadline: float) -> None:
            nonlocal errors
            headers = {"Authorization": "Bearer " + create_token(me, 0, secret, 3600)}
            count = 0
            while time.monotonic() < deadline:
                body = {"to_id": friend, "msg": f"bench {n}/{count}", "client_msg_id": f"{run}-{n}-{count}"}
                count += 1
                try:
                    response = await http.post("/api/user-message", json=body, headers=headers)
                except httpx.HTTPError:
                    errors += 1
                    continue
                statuses[response.status_code] += 1

        since = time.time()
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(sender(n, a, b, deadline) for n, (a, b) in enumerate(couples)))
        until = time.time()
    # The last commands of the last request are recorded before its answer: none is left out.
    sent = statuses.pop(201, 0)
    return Senders(read_commands(log, since, until), sent, statuses, errors)


def senders(base: str, couples: list[tuple[str, str]], secret: str, seconds: float, log: Path) -> Senders:
    return asyncio.run(_senders(base, couples, secret, seconds, log))
