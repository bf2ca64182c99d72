"""Two worker processes (`python -m chat_api` with WEB_CONCURRENCY=2): a message sent over REST reaches sockets
held by both, through the store's event log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.factories import user_payload
from tests.helpers import running_server, stop_server

pytestmark = pytest.mark.no_store  # the server under test runs a store of its own
# Sockets are opened until both workers hold one, for this long: a worker that starts a moment after the other
# (its store client, its hub) takes connections only once it serves.
BOTH_WORKERS_WITHIN = 20.0
PER_WORKER = 3  # sockets kept on one worker while looking for the other (the rest are closed)


def register_and_log_in(http: httpx.Client) -> tuple[str, str]:
    payload = user_payload()
    user_id = http.post("/api/register", json=payload).json()["user_id"]
    token = http.post("/api/login", json={"chat_id": payload["chat_id"], "password": payload["password"]}).json()
    return user_id, token["token"]


async def sockets_on_both_workers(url: str, token: str) -> tuple[list[ClientConnection], dict[ClientConnection, int]]:
    """Open sockets until the kernel has handed connections to both workers (it balances them itself), for at most
    BOTH_WORKERS_WITHIN seconds; at most PER_WORKER are kept on one worker meanwhile."""
    sockets: list[ClientConnection] = []
    worker_of: dict[ClientConnection, int] = {}
    deadline = time.monotonic() + BOTH_WORKERS_WITHIN
    while len(set(worker_of.values())) < 2 and time.monotonic() < deadline:
        ws = await connect(url)
        await ws.send(json.dumps({"type": "auth", "token": token}))
        ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert ready["type"] == "ready"
        if list(worker_of.values()).count(ready["worker"]) >= PER_WORKER:
            await ws.close()
            await asyncio.sleep(0.05)
            continue
        sockets.append(ws)
        worker_of[ws] = ready["worker"]
    return sockets, worker_of


def test_a_message_reaches_sockets_on_both_workers(tmp_path: Path) -> None:
    with running_server(tmp_path, WEB_CONCURRENCY="2") as (server, port):
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as http:
            _, alice_token = register_and_log_in(http)
            bob_id, bob_token = register_and_log_in(http)
            sent = http.post(
                "/api/user-requests",
                headers={"Authorization": alice_token},
                json={"to_id": bob_id, "verify_data": "hi"},
            )
            request_id = sent.json()["user_request_id"]
            agreed = http.put(
                f"/api/user-requests/{request_id}", headers={"Authorization": bob_token}, json={"status": "agree"}
            )
            assert agreed.status_code == 204

            async def scenario() -> tuple[set[int], set[int], Any]:
                sockets, worker_of = await sockets_on_both_workers(f"ws://127.0.0.1:{port}/ws", bob_token)
                async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                    message = {"to_id": bob_id, "msg": "to every tab", "client_msg_id": "two-workers"}
                    posted = await client.post(
                        "/api/user-message", headers={"Authorization": alice_token}, json=message
                    )
                    assert posted.status_code == 201, posted.text
                receivers: set[int] = set()
                for ws in sockets:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    assert frame["type"] == "message"
                    assert frame["message"]["id"] == posted.json()["user_message_id"]
                    receivers.add(worker_of[ws])
                # The token in the query string is never logged (the access log included).
                query_token = bob_token.replace(" ", "%20")
                async with connect(f"ws://127.0.0.1:{port}/ws?token={query_token}&last_seq=0") as ws:
                    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "ready"
                # A deploy: every worker closes its sockets with 1001, so clients reconnect and resume.
                stopping = asyncio.create_task(asyncio.to_thread(stop_server, server))
                codes = set()
                for ws in sockets:
                    with contextlib.suppress(ConnectionClosed):
                        await asyncio.wait_for(ws.recv(), 20)
                    codes.add(ws.close_code)
                await stopping
                assert codes == {1001}
                return set(worker_of.values()), receivers, posted.json()

            workers, receivers, _ = asyncio.run(scenario())
            assert len(workers) == 2, f"every socket landed on one worker ({workers}); see {tmp_path / 'server.log'}"
            assert receivers == workers
            assert server.pid not in workers, "the workers are child processes of the main one"
    logged = (tmp_path / "server.log").read_text()
    assert "/ws" in logged, "the access log shows WebSocket connections"
    for token in (alice_token, bob_token):
        assert token.removeprefix("Bearer ").rsplit(".", 1)[1] not in logged
