"""Scenario 13: message search over 10,000 and over 100,000 stored messages (issue 13).

Each size gets a store of its own, seeded straight through PyMongo with the app's own builders (messages by
`new_message_doc`, their postings by `new_term_docs`, in insert_many batches) before the app starts and builds
the indexes: the searcher has 10 friends and 3 of the 10 groups; other users talk in 20 pairs and in the other 7
groups. Every conversation grows with the size (the searcher may read 55 % of the messages at either size: 20 %
direct, 35 % in groups), so the bigger store holds ten times the searcher's own postings of every term too. Texts
are short, as chat messages are: 1 to 3 words of 3 to 5 letters drawn from 400 made-up words with Zipf-like
frequencies, a sixth with a Chinese phrase. The queries (cycled) are a very common word, a middle one, a rare one,
a 3-letter prefix, a Chinese bigram and a two-word query; the figure is the p50 of `GET /api/messages/search?q=…`
(limit 50), asked one at a time, the two stores alternating.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import bcrypt
import httpx
from bson import ObjectId
from pymongo import MongoClient

from chat_api.friends.models import new_friendship_docs, pair_key
from chat_api.groups.models import new_group_doc, new_member_doc
from chat_api.messages.models import new_message_doc, new_term_docs
from chat_api.security import create_token

FRIENDS = 10
OTHER_PAIRS = 20
GROUPS = 10
MY_GROUPS = 3
VOCABULARY = 400
BATCH = 5_000
CHINESE = ["你好", "世界", "明天见", "吃饭了吗", "周末快乐", "工作顺利", "好久不见", "下午开会", "天气不错", "谢谢你"]


@dataclass(frozen=True)
class Seeded:
    searcher: str
    messages: int
    postings: int
    queries: list[str]
    seconds: float


def vocabulary(rng: random.Random) -> list[str]:
    words: list[str] = []
    while len(words) < VOCABULARY:
        word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 5)))
        if word not in words:
            words.append(word)
    return words


def seed(uri: str, database: str, messages: int, rng: random.Random) -> Seeded:
    """The users, friendships, groups, messages and postings of one store; the searcher and the queries."""
    started = time.monotonic()
    words = vocabulary(rng)
    weights = [1 / (rank + 1) for rank in range(VOCABULARY)]
    now = datetime.now(UTC)
    start = now - timedelta(days=30)
    password = bcrypt.hashpw(b"not-used-here", bcrypt.gensalt(4)).decode()
    ids = [str(ObjectId()) for _ in range(1 + FRIENDS + 2 * OTHER_PAIRS)]
    me, friends, others = ids[0], ids[1 : 1 + FRIENDS], ids[1 + FRIENDS :]
    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    try:
        db = client[database]
        db.users.insert_many(
            [
                {"_id": ObjectId(uid), "chat_id": 800_000_000 + n, "email": f"searcher{n}@bench.example.com",
                 "username": f"searcher{n}", "password": password, "register_at": start, "birthday": start,
                 "flag": "offline", "token_version": 0}
                for n, uid in enumerate(ids)
            ]
        )  # fmt: skip
        db.friendships.insert_many([doc for friend in friends for doc in new_friendship_docs(me, friend, start)])
        groups = [
            new_group_doc({"group_name": f"bench {g}"}, me if g < MY_GROUPS else others[g], start)
            for g in range(GROUPS)
        ]
        db.groups.insert_many(groups)
        db.group_members.insert_many(
            [new_member_doc(str(group["_id"]), group["lord_id"], "lord", start) for group in groups]
            + [new_member_doc(str(groups[g]["_id"]), friends[g], "user", start) for g in range(MY_GROUPS)]
        )
        my_pairs = [(me, friend) for friend in friends]
        other_pairs = [(others[2 * p], others[2 * p + 1]) for p in range(OTHER_PAIRS)]
        numbers: dict[str, int] = {}
        batch: list[dict[str, Any]] = []
        postings: list[dict[str, Any]] = []
        counted = 0
        step = timedelta(days=30) / messages
        for i in range(messages):
            text = " ".join(rng.choices(words, weights, k=rng.randint(1, 3)))
            if rng.random() < 1 / 6:
                text += " " + rng.choice(CHINESE)
            where = rng.random()
            created = start + step * i
            if where < 0.35:
                a, b = rng.choice(my_pairs if where < 0.2 else other_pairs)
                sender, to = (a, b) if rng.random() < 0.5 else (b, a)
                target = {"pair": pair_key(a, b), "to_id": to}
                conversation = target["pair"]
            else:
                group = groups[rng.randrange(MY_GROUPS) if where < 0.7 else rng.randrange(MY_GROUPS, GROUPS)]
                sender = group["lord_id"]
                target = {"group_id": str(group["_id"])}
                conversation = target["group_id"]
            numbers[conversation] = numbers.get(conversation, 0) + 1
            doc = new_message_doc(target, sender, text, n=numbers[conversation], created_at=created)
            doc["seq"] = 0
            batch.append(doc)
            postings += new_term_docs(doc)
            if len(batch) >= BATCH or i == messages - 1:
                direct = [d for d in batch if "pair" in d]
                grouped = [d for d in batch if "group_id" in d]
                if direct:
                    db.user_messages.insert_many(direct, ordered=False)
                if grouped:
                    db.group_messages.insert_many(grouped, ordered=False)
                for k in range(0, len(postings), BATCH):
                    db.message_terms.insert_many(postings[k : k + BATCH], ordered=False)
                counted += len(postings)
                batch, postings = [], []
    finally:
        client.close()
    queries = [words[0], words[20], words[200], words[5][:3], "世界", f"{words[1]} {words[10]}"]
    return Seeded(me, messages, counted, queries, time.monotonic() - started)


def p50_rounds(
    sites: list[tuple[str, Seeded]], secret: str, rounds: int, per_round: int, warmup: int
) -> list[list[float]]:
    """Each site's search latencies (ms), `rounds` rounds of `per_round` requests, the sites alternating."""
    tokens = ["Bearer " + create_token(seeded.searcher, 0, secret, 3600) for _, seeded in sites]
    clients = [
        httpx.Client(base_url=base, headers={"Authorization": token}, timeout=30)
        for (base, _), token in zip(sites, tokens, strict=True)
    ]
    times: list[list[float]] = [[] for _ in sites]
    try:
        for client, (_, seeded) in zip(clients, sites, strict=True):
            for k in range(warmup):
                ask(client, seeded.queries[k % len(seeded.queries)])
        for r in range(rounds):
            order = list(range(len(sites)))
            if r % 2:
                order.reverse()
            for i in order:
                queries = sites[i][1].queries
                for k in range(per_round):
                    times[i].append(ask(clients[i], queries[k % len(queries)]))
    finally:
        for client in clients:
            client.close()
    return times


def ask(client: httpx.Client, q: str) -> float:
    began = time.perf_counter()
    response = client.get("/api/messages/search", params={"q": q, "limit": 50})
    elapsed = (time.perf_counter() - began) * 1000
    if response.status_code != 200 or not response.json():
        raise RuntimeError(f"search {q!r}: {response.status_code} {response.text[:200]}")
    return elapsed


def p50(values: list[float]) -> float:
    return float(statistics.median(values))
