"""Soak: mixed traffic against a running API from this second process, then every acknowledged write read back.

`python -m tests.soak --duration 600` (what `make soak` runs) starts the API as a user would (`python -m chat_api`,
one worker, an embedded store in a temporary folder), drives it with concurrent clients for the duration, samples
the API's resident memory, and checks at the end: no 5xx and no failed request, every acknowledged registration,
profile change and password change present, p99 latency of the last window within 1.5x of the first, and resident
memory grown less than 10 % from the first window to the last. It prints a JSON report and exits 1 on any miss.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chat_api.store.embedded import free_loopback_port
from tests.helpers import GENEROUS_LIMITS_ENV, stop_server, subprocess_env, wait_for_health

P99_GROWTH_LIMIT = 1.5
RSS_GROWTH_LIMIT = 1.10
# The first seconds warm caches and connection pools; they belong to neither window.
WARM_UP_S = 5.0
REQUEST_TIMEOUT_S = 10.0
# What each operation answers when all is well (the emails checked are all taken).
EXPECTED_STATUS = {
    "register": 201,
    "login": 200,
    "getUser": 200,
    "showUser": 200,
    "listUsers": 200,
    "checkEmail": 422,
    "update": 204,
    "password": 204,
    "befriend": 201,
    "agree": 204,
    "sendMessage": 201,
    "history": 200,
    "conversations": 200,
}


@dataclass
class SoakUser:
    id: str
    chat_id: int
    email: str
    password: str
    personality: str | None = None
    token: str = ""
    # A write that got no answer may or may not have happened: such a user's final state is not checked.
    uncertain: bool = False
    friends: list[SoakUser] = field(default_factory=list)


@dataclass
class Conversation:
    """The direct messages between two soak users that the API acknowledged, by id, and those unanswered."""

    a: SoakUser
    b: SoakUser
    acknowledged: dict[str, str] = field(default_factory=dict)  # message id -> text
    unanswered: int = 0


@dataclass
class Sample:
    at: float
    op: str
    status: int  # 0: no answer (timeout or transport error)
    latency: float


@dataclass
class Soak:
    base_url: str
    duration: float
    started: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)
    users: list[SoakUser] = field(default_factory=list)
    lost_registrations: int = 0
    conversations: dict[tuple[str, str], Conversation] = field(default_factory=dict)
    chat_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(7_000_000_000 + os.getpid() * 1000))

    async def call(
        self, client: httpx.AsyncClient, op: str, method: str, path: str, **kwargs: Any
    ) -> httpx.Response | None:
        began = time.monotonic()
        try:
            response = await client.request(method, path, timeout=REQUEST_TIMEOUT_S, **kwargs)
        except httpx.HTTPError:
            self.samples.append(Sample(began - self.started, op, 0, time.monotonic() - began))
            return None
        self.samples.append(Sample(began - self.started, op, response.status_code, time.monotonic() - began))
        return response

    async def register(self, client: httpx.AsyncClient) -> SoakUser | None:
        chat_id = next(self.chat_ids)
        email, password = f"soak{chat_id}@example.com", f"pw-{secrets.token_hex(8)}"
        payload: dict[str, Any] = {
            "username": f"soak{chat_id}",
            "password": password,
            "email": email,
            "chat_id": chat_id,
        }
        response = await self.call(client, "register", "POST", "/api/register", json=payload)
        if response is None:
            self.lost_registrations += 1
            return None
        if response.status_code != 201:
            return None
        user = SoakUser(response.json()["user_id"], chat_id, email, password)
        self.users.append(user)
        return user

    async def log_in(self, client: httpx.AsyncClient, user: SoakUser) -> None:
        body = {"chat_id": user.chat_id, "password": user.password}
        response = await self.call(client, "login", "POST", "/api/login", json=body)
        if response is not None and response.status_code == 200:
            user.token = response.json()["token"]

    async def run_client(self, seed: int) -> None:
        rng = random.Random(seed)
        own: list[SoakUser] = []
        async with httpx.AsyncClient(base_url=self.base_url) as client:
            while time.monotonic() - self.started < self.duration:
                if not own or rng.random() < 0.05:
                    user = await self.register(client)
                    if user is not None:
                        await self.log_in(client, user)
                        if own and user.token and own[-1].token:
                            await self.befriend(client, user, own[-1])
                        own.append(user)
                    continue
                me = rng.choice(own)
                if not me.token:
                    await self.log_in(client, me)
                    continue
                auth = {"Authorization": me.token}
                roll = rng.random()
                if roll < 0.10:
                    await self.log_in(client, me)
                elif roll < 0.30:
                    await self.call(client, "getUser", "GET", "/api/getUser", headers=auth)
                elif roll < 0.50:
                    other = rng.choice(self.users)
                    await self.call(client, "showUser", "GET", f"/api/users/{other.id}", headers=auth)
                elif roll < 0.60:
                    # Clients page from the start; a deep random offset would measure skip() growing with the
                    # store rather than the service staying steady.
                    offset = rng.randrange(200)
                    await self.call(client, "listUsers", "GET", f"/api/users?limit=20&offset={offset}", headers=auth)
                elif roll < 0.70:
                    other = rng.choice(self.users)
                    await self.call(client, "checkEmail", "GET", f"/api/users/checkEmail/{other.email}")
                elif roll < 0.80:
                    mood = f"mood {rng.randrange(1_000_000)}"
                    await self.update_own(client, me, auth, "update", "personality", mood)
                elif roll < 0.85:
                    await self.update_own(client, me, auth, "password", "password", f"pw-{secrets.token_hex(8)}")
                elif roll < 0.93 and me.friends:
                    await self.send_message(client, me, rng.choice(me.friends), auth, rng)
                elif roll < 0.97 and me.friends:
                    friend = rng.choice(me.friends)
                    url = f"/api/user-message/{me.id}/{friend.id}?limit=20"
                    await self.call(client, "history", "GET", url, headers=auth)
                else:
                    await self.call(client, "conversations", "GET", "/api/conversations?limit=20", headers=auth)

    async def befriend(self, client: httpx.AsyncClient, me: SoakUser, other: SoakUser) -> None:
        body = {"to_id": other.id, "verify_data": "soak"}
        asked = await self.call(
            client, "befriend", "POST", "/api/user-requests", headers={"Authorization": me.token}, json=body
        )
        if asked is None or asked.status_code != 201:
            return
        url = f"/api/user-requests/{asked.json()['user_request_id']}"
        agreed = await self.call(
            client, "agree", "PUT", url, headers={"Authorization": other.token}, json={"status": "agree"}
        )
        if agreed is not None and agreed.status_code == 204:
            me.friends.append(other)
            other.friends.append(me)
            self.conversations[conversation_key(me, other)] = Conversation(me, other)

    async def send_message(
        self, client: httpx.AsyncClient, me: SoakUser, friend: SoakUser, auth: dict[str, str], rng: random.Random
    ) -> None:
        conversation = self.conversations[conversation_key(me, friend)]
        text = f"soak {rng.randrange(1_000_000_000)}"
        body = {"to_id": friend.id, "msg": text, "client_msg_id": secrets.token_hex(8)}
        response = await self.call(client, "sendMessage", "POST", "/api/user-message", headers=auth, json=body)
        if response is None:
            conversation.unanswered += 1
        elif response.status_code == 201:
            conversation.acknowledged[response.json()["user_message_id"]] = text

    async def update_own(
        self, client: httpx.AsyncClient, me: SoakUser, auth: dict[str, str], label: str, field: str, value: str
    ) -> None:
        """PUT one field of my own user (`personality` or `password`): once acknowledged, what must be read back."""
        response = await self.call(client, label, "PUT", f"/api/users/{me.id}", headers=auth, json={field: value})
        if response is None:
            me.uncertain = True
        elif response.status_code == 204:
            setattr(me, field, value)

    async def read_back(self) -> list[str]:
        """Every acknowledged write, read back through the API: the list of what is missing or wrong."""
        problems: list[str] = []
        checked = [user for user in self.users if not user.uncertain]
        async with httpx.AsyncClient(base_url=self.base_url, timeout=REQUEST_TIMEOUT_S) as client:
            reader = next((user for user in checked if user.token), None)
            if reader is None:
                return ["no user could log in"]
            semaphore = asyncio.Semaphore(8)

            async def check(user: SoakUser) -> None:
                async with semaphore:
                    shown = await client.get(f"/api/users/{user.id}", headers={"Authorization": reader.token})
                    if shown.status_code != 200:
                        problems.append(f"user {user.id}: GET answered {shown.status_code}")
                        return
                    body = shown.json()
                    expected = {"chat_id": user.chat_id, "email": user.email, "personality": user.personality}
                    found = {key: body.get(key) for key in expected}
                    if found != expected:
                        problems.append(f"user {user.id}: expected {expected}, found {found}")
                    login = await client.post("/api/login", json={"chat_id": user.chat_id, "password": user.password})
                    if login.status_code != 200:
                        problems.append(
                            f"user {user.id}: login with the last acknowledged password: {login.status_code}"
                        )

            await asyncio.gather(*(check(user) for user in checked))
            await asyncio.gather(
                *(self.check_history(client, c, semaphore, problems) for c in self.conversations.values())
            )
            listed = await client.get("/api/users?limit=1", headers={"Authorization": reader.token})
            total = int(listed.headers.get("X-Total-Count", "-1"))
            # Exactly once: no acknowledged registration missing or doubled. Registrations that got no answer may
            # or may not exist.
            if not len(self.users) <= total <= len(self.users) + self.lost_registrations:
                problems.append(f"{total} users stored for {len(self.users)} acknowledged registrations")
        return problems

    async def check_history(
        self, client: httpx.AsyncClient, conversation: Conversation, semaphore: asyncio.Semaphore, problems: list[str]
    ) -> None:
        """The whole history of a pair, paged through: every acknowledged message once, nothing unexplained."""
        reader = conversation.a if conversation.a.token else conversation.b
        auth = {"Authorization": reader.token}
        url = f"/api/user-message/{conversation.a.id}/{conversation.b.id}?limit=200"
        found: list[tuple[str, str]] = []
        async with semaphore:
            before = ""
            while True:
                page = await client.get(url + before, headers=auth)
                if page.status_code != 200:
                    problems.append(f"history {conversation.a.id}/{conversation.b.id}: {page.status_code}")
                    return
                messages = page.json()
                found.extend((m["id"], m["msg"]) for m in messages)
                if len(messages) < 200:
                    break
                before = f"&before={messages[-1]['id']}"
        ids = [message_id for message_id, _ in found]
        pair = f"{conversation.a.id}/{conversation.b.id}"
        if len(ids) != len(set(ids)):
            problems.append(f"history {pair}: a message listed twice")
        texts = dict(found)
        for message_id, text in conversation.acknowledged.items():
            if texts.get(message_id) != text:
                problems.append(f"history {pair}: acknowledged message {message_id} missing or changed")
        if len(ids) > len(conversation.acknowledged) + conversation.unanswered:
            problems.append(f"history {pair}: {len(ids)} messages for {len(conversation.acknowledged)} acknowledged")


def conversation_key(a: SoakUser, b: SoakUser) -> tuple[str, str]:
    return (a.id, b.id) if a.id < b.id else (b.id, a.id)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def process_tree(root: int) -> list[int]:
    """The root and its descendants, from /proc, except the embedded store (not part of the API's memory)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name_end = stat.rindex(")")
        names[int(entry.name)] = stat[stat.index("(") + 1 : name_end]
        parents[int(entry.name)] = int(stat[name_end + 2 :].split()[1])
    tree, frontier = [root], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        tree.extend(children)
        frontier = children
    return [pid for pid in tree if not names.get(pid, "").startswith("nx-27017")]


def resident_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


class MemorySampler(threading.Thread):
    def __init__(self, root: int, started: float) -> None:
        super().__init__(daemon=True)
        self.root, self.started = root, started
        self.samples: list[tuple[float, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            self.samples.append((time.monotonic() - self.started, resident_kib(process_tree(self.root))))


def window_length(duration: float) -> float:
    """A minute for a long soak; a sixth of a short one, so that its first and last windows still hold many samples."""
    return 60.0 if duration >= 6 * 60 else max(5.0, (duration - WARM_UP_S) / 6)


def report(soak: Soak, memory: list[tuple[float, int]], problems: list[str]) -> dict[str, Any]:
    window = window_length(soak.duration)
    first = (WARM_UP_S, WARM_UP_S + window)
    last = (soak.duration - window, soak.duration)
    latencies = {
        name: [s.latency for s in soak.samples if span[0] <= s.at < span[1] and s.status]
        for name, span in (("first", first), ("last", last))
    }
    rss = {
        name: [kib for at, kib in memory if span[0] <= at < span[1]]
        for name, span in (("first", first), ("last", last))
    }
    p99_first, p99_last = percentile(latencies["first"], 0.99), percentile(latencies["last"], 0.99)
    rss_first = sum(rss["first"]) / max(1, len(rss["first"]))
    rss_last = sum(rss["last"]) / max(1, len(rss["last"]))
    operations: dict[str, dict[str, Any]] = {}
    for op in EXPECTED_STATUS:
        samples = [s for s in soak.samples if s.op == op]
        statuses: dict[str, int] = {}
        for sample in samples:
            statuses[str(sample.status)] = statuses.get(str(sample.status), 0) + 1
        p99 = percentile([s.latency for s in samples], 0.99)
        # Per window too, so that a growing p99 names the operations that grew.
        by_window = {
            name: percentile([s.latency for s in samples if span[0] <= s.at < span[1] and s.status], 0.99)
            for name, span in (("first", first), ("last", last))
        }
        operations[op] = {
            "requests": len(samples),
            "statuses": statuses,
            "p99_ms": round(p99 * 1000, 1),
            "p99_ms_by_window": {name: round(value * 1000, 1) for name, value in by_window.items()},
        }
    failed = sum(1 for s in soak.samples if s.status == 0 or s.status >= 500)
    unexpected = sum(1 for s in soak.samples if 0 < s.status < 500 and s.status != EXPECTED_STATUS[s.op])
    checks = {
        "no_5xx_or_unanswered": failed == 0,
        "no_unexpected_status": unexpected == 0,
        "no_lost_writes": not problems,
        "p99_last_within_1.5x_first": p99_last <= P99_GROWTH_LIMIT * p99_first,
        "rss_growth_under_10_percent": rss_last < RSS_GROWTH_LIMIT * rss_first,
    }
    return {
        "duration_s": soak.duration,
        "window_s": window,
        "requests": len(soak.samples),
        "requests_per_s": round(len(soak.samples) / soak.duration, 1),
        "operations": operations,
        "acknowledged_users": len(soak.users),
        "acknowledged_messages": sum(len(c.acknowledged) for c in soak.conversations.values()),
        "unanswered_registrations": soak.lost_registrations,
        "problems": problems[:20],
        "p99_ms": {"first": round(p99_first * 1000, 1), "last": round(p99_last * 1000, 1)},
        "p99_ratio": round(p99_last / p99_first, 3) if p99_first else None,
        "rss_kib": {"first": round(rss_first), "last": round(rss_last)},
        "rss_ratio": round(rss_last / rss_first, 3) if rss_first else None,
        "checks": checks,
        "passed": all(checks.values()),
    }


async def drive(base_url: str, duration: float, clients: int, server_pid: int) -> dict[str, Any]:
    soak = Soak(base_url, duration)
    sampler = MemorySampler(server_pid, soak.started)
    sampler.start()
    try:
        await asyncio.gather(*(soak.run_client(seed) for seed in range(clients)))
    finally:
        sampler.done.set()
        sampler.join()
    problems = await soak.read_back()
    return report(soak, sampler.samples, problems)


def serve(data_dir: Path, port: int) -> subprocess.Popen[str]:
    env = subprocess_env(data_dir, PORT=str(port), WEB_CONCURRENCY="1", LOG_LEVEL="WARNING", **GENEROUS_LIMITS_ENV)
    server = subprocess.Popen(
        [sys.executable, "-m", "chat_api"],
        cwd=data_dir.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    wait_for_health(f"http://127.0.0.1:{port}", process=server)
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of traffic (default 600)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--report", type=Path, help="also write the JSON report to this file")
    args = parser.parse_args(argv)
    if args.duration < WARM_UP_S + 10:
        parser.error(f"--duration must be at least {WARM_UP_S + 10:g} s")

    with tempfile.TemporaryDirectory(prefix="chat-api-soak-") as folder:
        port = free_loopback_port()
        server = serve(Path(folder) / "data", port)
        try:
            result = asyncio.run(drive(f"http://127.0.0.1:{port}", args.duration, args.clients, server.pid))
        finally:
            stop_server(server)
    text = json.dumps(result, indent=2)
    print(text)
    if args.report:
        args.report.write_text(text + "\n")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
