"""The token's user from a per-process cache: one store command per authenticated read, and revocation still
reaches every process, through the `logout` event at once, and through the cache's lifetime at the latest."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo.database import Database

from bench.round_trips import CommandCounter
from chat_api.config import Settings
from chat_api.security import create_token
from chat_api.store import client as store
from tests.conftest import OtherApp
from tests.counted import Counted, commands, counted
from tests.factories import create_user
from tests.helpers import Api, assert_error, running_server

__all__ = ["counted"]  # a fixture used by name
REVOKED = "This token was revoked by a logout"
GONE = "The account of this token no longer exists"
# What the event path must achieve across the two workers of one instance (a wake-up between them: milliseconds
# here), far below the cache lifetime the two-worker test gives the server.
EVENT_PATH_BOUND = 1.0
LONG_CACHE = "60"


def test_an_authenticated_read_sends_the_store_only_its_own_command(counted: Counted) -> None:
    alice, bob = create_user(counted.api), create_user(counted.api)
    response, trips = counted.count(lambda: counted.api.get(f"/api/users/{bob.id}", headers=alice.headers))
    assert response.status == 200
    assert commands(trips) == [("find", "users")]  # bob; alice's token version came from the cache


def test_the_cache_is_filled_by_the_login_itself(counted: Counted) -> None:
    alice = create_user(counted.api)  # logs in
    response, trips = counted.count(lambda: counted.api.get("/api/getUser", headers=alice.headers))
    assert response.status == 200
    assert response.json["id"] == alice.id
    assert commands(trips) == [("find", "users")]  # the profile, read now


def test_a_zero_cache_lifetime_reads_the_token_version_for_every_request(
    other_app: OtherApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = CommandCounter()
    monkeypatch.setitem(store.CLIENT_OPTIONS, "event_listeners", [counter])
    with other_app(token_cache_seconds=0.0) as client:
        api = Api(client)
        alice, bob = create_user(api), create_user(api)
        for _ in range(3):
            counter.commands.clear()
            counter.recording = True
            assert api.get(f"/api/users/{bob.id}", headers=alice.headers).status == 200
            counter.recording = False
            assert sorted(counter.commands) == [("find", "users"), ("find", "users")]


def test_a_revocation_that_never_announced_itself_ends_within_the_cache_lifetime(
    other_app: OtherApp, sync_db: Database[dict[str, Any]]
) -> None:
    """A logout whose `logout` event this process never got (another instance, its event lost): the token works
    until the remembered version is older than TOKEN_CACHE_SECONDS, and not a moment longer."""
    lifetime = 1.0
    with other_app(token_cache_seconds=lifetime) as client:
        api = Api(client)
        alice, bob = create_user(api), create_user(api)
        assert api.get(f"/api/users/{bob.id}", headers=alice.headers).status == 200
        revoked_at = time.monotonic()
        sync_db["users"].update_one({"_id": _oid(alice.id)}, {"$inc": {"token_version": 1}})
        while (response := api.get(f"/api/users/{bob.id}", headers=alice.headers)).status == 200:
            assert time.monotonic() - revoked_at < lifetime, "a revoked token outlived the cache lifetime"
            time.sleep(0.05)
        assert_error(response, 401, REVOKED)


def test_a_token_newer_than_the_remembered_version_is_accepted_at_once(api: Api, settings: Settings) -> None:
    """A logout and a new login on another process: this one remembers the old version, and must not refuse the
    new token for it."""
    alice, bob = create_user(api), create_user(api)
    assert api.get(f"/api/users/{bob.id}", headers=alice.headers).status == 200  # remembered: version 0
    api.post("/api/logout", headers=alice.headers)  # version 1, and forgotten here
    assert api.get(f"/api/users/{bob.id}", headers=alice.headers).status == 401  # remembered: version 1
    newer = create_token(alice.id, 1, settings.jwt_secret, 600)
    assert api.get(f"/api/users/{bob.id}", headers={"Authorization": f"Bearer {newer}"}).status == 200


def _oid(hex_id: str) -> ObjectId:
    return ObjectId(hex_id)


def _served_by(log: Path) -> dict[str, tuple[int, int]]:
    """request id -> (worker pid, status), from the server's JSON access lines."""
    served: dict[str, tuple[int, int]] = {}
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("logger") == "sanic.access" and entry.get("request_id") and entry.get("status"):
            served[entry["request_id"]] = (int(entry["pid"]), int(entry["status"]))
    return served


@pytest.mark.no_store
@pytest.mark.parametrize("revoke", ["logout", "delete"])
def test_a_revocation_reaches_the_other_worker_through_the_event_path(tmp_path: Path, revoke: str) -> None:
    """Two workers, each remembering the token's version (its cache lives 60 s): after a logout or an account
    deletion answered by one, the other refuses the token within EVENT_PATH_BOUND."""
    log = tmp_path / "server.log"
    with (
        running_server(tmp_path, WEB_CONCURRENCY="2", TOKEN_CACHE_SECONDS=LONG_CACHE, LOG_FORMAT="json") as (_, port),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
    ):
        user_ids, headers = [], []
        for n in range(2):
            payload = {
                "chat_id": 7_000_000 + n,
                "email": f"two-{n}@example.com",
                "username": f"two{n}",
                "password": "correct horse battery",
            }
            user_ids.append(http.post("/api/register", json=payload).json()["user_id"])
            token = http.post("/api/login", json={"chat_id": payload["chat_id"], "password": payload["password"]})
            headers.append({"Authorization": token.json()["token"]})
        alice, bob = headers
        path = f"/api/users/{user_ids[1]}"

        def send(tag: str, n: int) -> tuple[str, int, float]:
            request_id = f"{tag}-{n}"
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as fresh:
                response = fresh.get(path, headers={**alice, "X-Request-ID": request_id})
            return request_id, response.status_code, time.monotonic()

        # Both workers remember alice's version: each has answered her with a 200.
        deadline = time.monotonic() + 20
        warm: list[str] = []
        while True:
            request_id, status, _ = send("warm", len(warm))
            assert status == 200
            warm.append(request_id)
            served = _served_by(log)
            if len({served[r][0] for r in warm if r in served}) == 2:
                break
            assert time.monotonic() < deadline, "the kernel never handed a connection to the second worker"

        if revoke == "logout":
            assert http.post("/api/logout", headers=alice).status_code == 204
            message = REVOKED
        else:
            assert http.delete(f"/api/users/{user_ids[0]}", headers=alice).status_code == 200
            message = GONE
        revoked_at = time.monotonic()

        answers: dict[str, tuple[int, float]] = {}
        deadline = time.monotonic() + 20
        while True:
            request_id, status, at = send("after", len(answers))
            answers[request_id] = (status, at - revoked_at)
            served = _served_by(log)
            refusing = {served[r][0] for r, (status, _) in answers.items() if r in served and status == 401}
            if len(refusing) == 2:
                break
            assert time.monotonic() < deadline, "a worker kept accepting the revoked token"
            time.sleep(0.02)
        late = [(r, after) for r, (status, after) in answers.items() if status == 200 and after > EVENT_PATH_BOUND]
        assert late == [], f"accepted after the event path's bound: {late}"
        assert max(after for _, after in answers.values()) < 20
        refused = http.get(path, headers=alice)
        assert refused.status_code == 401
        assert refused.json() == {"message": message}
        assert http.get(f"/api/users/{user_ids[0]}", headers=bob).status_code in (200, 404)
