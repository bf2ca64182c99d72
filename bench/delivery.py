"""Scenarios 8 (11) and 12: real-time delivery. 1,000 members of one group hold a socket each; one of them posts group
messages over REST; the latency from the POST to the receipt at every member, and the messages per second delivered.

Scenario 8 (issue 12 calls it 11) runs it on one app process; scenario 12 posts to instance A and holds every socket
on instance B, the two joined by Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import bcrypt
import httpx
from bson import ObjectId
from pymongo import MongoClient
from websockets.asyncio.client import ClientConnection, connect

from chat_api.friends.models import new_friendship_docs
from chat_api.groups.models import new_group_doc, new_member_doc
from chat_api.security import create_token

MEMBERS = 1_000
QUICK_MEMBERS = 200
SENDERS = 4  # concurrent posts while measuring the rate


@dataclass(frozen=True)
class Delivery:
    members: int
    messages: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    rate: float  # messages per second, each delivered to every member
    rate_messages: int
    missing: int
    post_p50_ms: float  # the POST's own answer time
    spread_p50_ms: float  # from the first member's receipt to the last one's, per message
    first_p50_ms: float  # from the POST to the first member's receipt: the server's part, before the client's reading


def seed(uri: str, database: str, members: int) -> tuple[list[str], str]:
    """Users, their friendships with the sender, one group with every one of them; ids and the group's id."""
    now = datetime.now(UTC)
    password = bcrypt.hashpw(b"not-used-here", bcrypt.gensalt(4)).decode()
    ids = [ObjectId() for _ in range(members)]
    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    try:
        db = client[database]
        db.users.insert_many(
            [
                {
                    "_id": oid,
                    "chat_id": 900_000_000 + n,
                    "email": f"member{n}@bench.example.com",
                    "username": f"member{n}",
                    "password": password,
                    "register_at": now,
                    "birthday": now,
                    "flag": "offline",
                    "token_version": 0,
                }
                for n, oid in enumerate(ids)
            ]
        )
        sender = str(ids[0])
        db.friendships.insert_many([doc for other in ids[1:] for doc in new_friendship_docs(sender, str(other), now)])
        group = new_group_doc({"group_name": "bench"}, sender, now)
        group_id = str(group["_id"])
        db.groups.insert_one(group)
        db.group_members.insert_many(
            [new_member_doc(group_id, str(oid), "lord" if n == 0 else "user", now) for n, oid in enumerate(ids)]
        )
        return [str(oid) for oid in ids], group_id
    finally:
        client.close()


async def _member(ws: ClientConnection, receipts: dict[str, list[float]], arrived: asyncio.Event) -> None:
    async for raw in ws:
        at = time.perf_counter()
        frame = json.loads(raw)
        if frame.get("type") == "group_message":
            receipts.setdefault(frame["message"]["client_msg_id"], []).append(at)
            arrived.set()


async def open_sockets(base: str, tokens: list[str]) -> list[ClientConnection]:
    """One authenticated socket per token on the app at `base`, each past its `ready` frame."""
    ws_url = base.replace("http://", "ws://") + "/ws"
    sockets = []
    for token in tokens:
        ws = await connect(ws_url, max_size=None)
        await ws.send(json.dumps({"type": "auth", "token": token}))
        while json.loads(await ws.recv())["type"] != "ready":
            pass
        sockets.append(ws)
    return sockets


async def _measure(
    base: str, tokens: list[str], group_id: str, messages: int, rate_seconds: float, sockets_base: str
) -> Delivery:
    sockets = await open_sockets(sockets_base, tokens)
    receipts: dict[str, list[float]] = {}
    arrived = asyncio.Event()
    readers = [asyncio.create_task(_member(ws, receipts, arrived)) for ws in sockets]
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}
    path = f"/api/groups/{group_id}/messages"
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": tokens[0]}, timeout=30) as http:

        async def post(key: str) -> None:
            sent[key] = time.perf_counter()
            response = await http.post(path, json={"msg": f"bench {key}", "client_msg_id": key})
            answered[key] = time.perf_counter()
            assert response.status_code == 201, response.text

        async def all_received(keys: list[str], seconds: float) -> None:
            """Until every member has every message (or `seconds` pass: the rest counts as missing)."""
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    while any(len(receipts.get(k, ())) < len(sockets) for k in keys):
                        arrived.clear()
                        await arrived.wait()

        # Latency: one message at a time, paced, so each figure is a message's own delivery.
        latency_keys = [f"l{n}" for n in range(messages)]
        for key in latency_keys:
            await post(key)
            await asyncio.sleep(0.05)
        await all_received(latency_keys, 10)
        # Rate: several senders as fast as the app takes them, until every member got every message.
        started = time.perf_counter()
        rate_keys: list[str] = []
        while time.perf_counter() - started < rate_seconds:
            batch = [f"r{len(rate_keys) + n}" for n in range(SENDERS)]
            rate_keys += batch
            await asyncio.gather(*(post(key) for key in batch))
        await all_received(rate_keys, 30)
        finished = max(max(receipts.get(k, [started])) for k in rate_keys)
    for ws in sockets:
        await ws.close()
    for reader in readers:
        reader.cancel()
    latencies = sorted((at - sent[k]) * 1000 for k in latency_keys for at in receipts.get(k, ()))
    missing = sum(len(sockets) - len(receipts.get(k, ())) for k in latency_keys + rate_keys)
    return Delivery(
        members=len(sockets),
        messages=len(latency_keys),
        p50_ms=statistics.median(latencies),
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        max_ms=latencies[-1],
        rate=len(rate_keys) / (finished - started),
        rate_messages=len(rate_keys),
        missing=missing,
        post_p50_ms=statistics.median((answered[k] - sent[k]) * 1000 for k in latency_keys),
        spread_p50_ms=statistics.median(
            (max(receipts[k]) - min(receipts[k])) * 1000 for k in latency_keys if receipts.get(k)
        ),
        first_p50_ms=statistics.median((min(receipts[k]) - sent[k]) * 1000 for k in latency_keys if receipts.get(k)),
    )


def measure(base: str, uri: str, database: str, secret: str, quick: bool, sockets_base: str | None = None) -> Delivery:
    """Post to `base`; the members' sockets on `sockets_base` (default: the same server)."""
    ids, group_id = seed(uri, database, QUICK_MEMBERS if quick else MEMBERS)
    tokens = ["Bearer " + create_token(user_id, 0, secret, 3600) for user_id in ids]
    return asyncio.run(_measure(base, tokens, group_id, 30 if quick else 200, 3 if quick else 10, sockets_base or base))
