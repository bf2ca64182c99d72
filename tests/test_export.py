"""`GET /api/users/<own id>/export`: what it holds, who may have it, and that it streams in bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import MongoClient

from chat_api.export.schemas import Export
from chat_api.friends.models import new_direct_conversation_doc, new_friendship_docs, pair_key
from chat_api.messages.models import new_message_doc
from chat_api.store.embedded import free_loopback_port
from tests.factories import (
    TestUser,
    add_member,
    auth_headers,
    create_group,
    create_user,
    make_friends,
    send_direct,
    user_payload,
)
from tests.helpers import (
    GENEROUS_LIMITS_ENV,
    Api,
    stop_server,
    subprocess_env,
    wait_for_health,
)
from tests.test_files import PNG, upload, uploaded_id

UNKNOWN_ID = "0123456789abcdef01234567"


def export(api: Api, user: TestUser, user_id: str | None = None) -> Any:
    return api.get(f"/api/users/{user_id or user.id}/export", headers=user.headers)


def test_the_export_holds_every_kind_of_item_of_a_small_account(api: Api) -> None:
    me, friend, quiet, asker, asked, refuser = (create_user(api) for _ in range(6))
    make_friends(api, me, friend)
    make_friends(api, quiet, me)
    assert api.post("/api/user-requests", json={"to_id": me.id, "verify_data": "hello"}, headers=asker.headers)
    sent = api.post("/api/user-requests", json={"to_id": asked.id, "verify_data": "me here"}, headers=me.headers)
    refused = api.post("/api/user-requests", json={"to_id": refuser.id, "verify_data": "no?"}, headers=me.headers)
    assert sent.status == 201
    answer = {"status": "refuse"}
    assert api.put(f"/api/user-requests/{refused.json['user_request_id']}", json=answer, headers=refuser.headers)
    image = uploaded_id(upload(api, me, "image", PNG))
    said = [
        api.post("/api/user-message", json={"to_id": friend.id, "msg": "hi"}, headers=me.headers).json["message"],
        api.post("/api/user-message", json={"to_id": me.id, "msg": "hello"}, headers=friend.headers).json["message"],
        api.post(
            "/api/user-message",
            json={"to_id": friend.id, "msg": f"/api/files/{image}", "msg_type": "img"},
            headers=me.headers,
        ).json["message"],
    ]
    mine = create_group(api, me, group_desc="mine")
    theirs = create_group(api, friend)
    assert add_member(api, mine, me, friend).status == 201
    assert add_member(api, theirs, friend, me).status == 201
    url = f"/api/groups/{theirs}/members/{me.id}"
    assert api.put(url, json={"identity": "admin"}, headers=friend.headers).status == 204
    in_groups = [
        api.post(
            f"/api/groups/{mine}/messages", json={"msg": "g1", "client_msg_id": "c1"}, headers=friend.headers
        ).json,
        api.post(f"/api/groups/{theirs}/messages", json={"msg": "g2"}, headers=me.headers).json,
    ]
    # Someone else's data does not leak in.
    assert api.post("/api/user-message", json={"to_id": friend.id, "msg": "x"}, headers=quiet.headers).status == 403
    upload(api, friend, "image", PNG)
    # My blocks are mine to export; a block of me is the blocker's.
    assert api.put(f"/api/blocks/{asker.id}", headers=me.headers).status == 204
    assert api.put(f"/api/blocks/{me.id}", headers=refuser.headers).status == 204

    response = export(api, me)
    assert response.status == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"] == f'attachment; filename="chat-export-{me.id}.json"'
    assert response.headers["cache-control"] == "no-store"
    document = json.loads(response.body)
    assert list(document) == ["profile", "friends", "friend_requests", "blocks", "groups", "messages", "files"]
    Export.model_validate(document)  # the shape the OpenAPI document gives

    assert document["profile"] == api.get(f"/api/users/{me.id}", headers=me.headers).json
    assert "password" not in response.text
    assert "token_version" not in response.text
    assert sorted((f["user_id"], f["username"]) for f in document["friends"]) == sorted(
        [(friend.id, friend.username), (quiet.id, quiet.username)]
    )
    requests = {(r["from_id"], r["to_id"], r["status"], r["verify_data"]) for r in document["friend_requests"]}
    assert requests == {
        (me.id, friend.id, "agree", "hi"),
        (quiet.id, me.id, "agree", "hi"),
        (asker.id, me.id, "waiting", "hello"),
        (me.id, asked.id, "waiting", "me here"),
        (me.id, refuser.id, "refuse", "no?"),
    }
    assert [b["user_id"] for b in document["blocks"]] == [asker.id]
    groups = {g["id"]: (g["identity"], g["group_name"], g["lord_id"]) for g in document["groups"]}
    assert groups == {mine: ("lord", "team", me.id), theirs: ("admin", "team", friend.id)}
    assert next(g for g in document["groups"] if g["id"] == mine)["group_desc"] == "mine"
    messages = {m["id"]: m for m in document["messages"]}
    assert set(messages) == {m["id"] for m in [*said, *in_groups]}
    for sent_message in said:
        exported = messages[sent_message["id"]]
        assert exported["conversation"] == {"type": "user", "id": friend.id}
        fields = ("from_id", "to_id", "msg", "msg_type", "client_msg_id", "created_at")
        assert {k: exported[k] for k in fields} == {k: sent_message[k] for k in fields}
    for group_message, group_id in zip(in_groups, (mine, theirs), strict=True):
        exported = messages[group_message["id"]]
        assert exported["conversation"] == {"type": "group", "id": group_id}
        assert exported["to_id"] is None
        assert (exported["from_id"], exported["msg"]) == (group_message["from_id"], group_message["msg"])
    assert messages[in_groups[0]["id"]]["client_msg_id"] == "c1"
    assert [(f["id"], f["url"], f["kind"], f["content_type"], f["length"]) for f in document["files"]] == [
        (image, f"/api/files/{image}", "image", "image/png", len(PNG))
    ]
    assert api.get(document["files"][0]["url"]).body == PNG


def test_messages_with_a_former_friend_stay_in_the_export(api: Api) -> None:
    """Unfriending ends the friendship, not the conversation: both sides still have what they said."""
    me, former = create_user(api), create_user(api)
    make_friends(api, me, former)
    said = [
        send_direct(api, me, former, "before we parted").json["message"]["id"],
        send_direct(api, former, me, "bye").json["message"]["id"],
    ]
    assert api.delete(f"/api/friends/{former.id}", headers=me.headers).status == 204
    for user, other in ((me, former), (former, me)):
        document = json.loads(export(api, user).body)
        assert document["friends"] == []
        assert [m["id"] for m in document["messages"]] == said
        assert {m["conversation"]["id"] for m in document["messages"]} == {other.id}


def test_an_empty_account_exports_empty_lists(api: Api) -> None:
    me = create_user(api)
    document = json.loads(export(api, me).body)
    assert {key: value for key, value in document.items() if key != "profile"} == {
        "friends": [],
        "friend_requests": [],
        "blocks": [],
        "groups": [],
        "messages": [],
        "files": [],
    }
    assert document["profile"]["id"] == me.id


def test_only_the_owner_may_export(api: Api) -> None:
    me, other = create_user(api), create_user(api)
    assert export(api, me, other.id).status == 403
    assert export(api, me, UNKNOWN_ID).status == 404
    assert export(api, me, "not-an-id").status == 404
    assert api.get(f"/api/users/{me.id}/export").status == 401
    assert api.get(f"/api/users/{me.id}/export", headers={"Authorization": "Bearer junk"}).status == 401
    assert export(api, me, me.id.upper()).status == 200


# Bounded memory: 100,000 messages, the app as a real process on a store of the test's own.

MESSAGES = 100_000
INSERT_BATCH = 1_000  # nx-27017 commits a bulk insert document by document: small batches keep it answering
# The export of 100,000 messages is about 44 MB of JSON. The worker may grow by what it holds at
# once (a batch of 1,000 messages, their objects and their text: a few MB; measured here: 5-6 MB
# at the peak) plus allocator and driver buffers not given back. 20 MB is under half the document:
# an export built in memory could not stay under it (its text alone is twice that, and the
# 100,000 messages' Python objects several times more).
GROWTH_BOUND = 20 * 1024 * 1024


def rss_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def worker_pid(main_pid: int) -> int:
    """The Sanic worker serving requests: the child of the main process (or of its manager) named like one."""
    children: list[int] = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() == str(main_pid):
            children.append(int(status.parent.name))
    for pid in children:
        # Not the store, the resource tracker nor Sanic's other helpers: the process serving requests.
        if b"SANIC_WORKER_NAME=Sanic-Server-" in Path(f"/proc/{pid}/environ").read_bytes():
            return pid
    raise AssertionError(f"no worker under {main_pid}: {children}")


@pytest.mark.slow
def test_an_account_with_100000_messages_exports_in_bounded_memory(tmp_path: Path) -> None:
    port = free_loopback_port()
    env = subprocess_env(tmp_path / "data", PORT=str(port), HOST="127.0.0.1", WEB_CONCURRENCY="1")
    env.update(GENEROUS_LIMITS_ENV)
    process = subprocess.Popen(
        [sys.executable, "-m", "chat_api"],
        cwd=tmp_path,
        env=env,
        start_new_session=True,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base, timeout=60, process=process)
        with httpx.Client(base_url=base, timeout=60) as http:
            payloads = [user_payload(), user_payload()]
            ids = [http.post("/api/register", json=p).json()["user_id"] for p in payloads]
            token = http.post(
                "/api/login", json={"chat_id": payloads[0]["chat_id"], "password": payloads[0]["password"]}
            )
            headers = auth_headers(token.json()["token"])
            registry = json.loads((tmp_path / "data" / "nx-27017.json").read_text())
            seed(f"mongodb://127.0.0.1:{registry['port']}/", env.get("MONGODB_DB", "chat"), ids[0], ids[1])
            worker = worker_pid(process.pid)
            # Warm up the route (imports, first allocations), then measure a full export.
            assert http.get(f"/api/users/{ids[1]}/export", headers=headers).status_code == 403
            before = rss_of(worker)
            peak = before
            done = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, rss_of(worker))
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            size = 0
            tail = b""
            try:
                with http.stream("GET", f"/api/users/{ids[0]}/export", headers=headers) as response:
                    assert response.status_code == 200
                    for piece in response.iter_bytes():
                        size += len(piece)
                        tail = (tail + piece)[-200:]
            finally:
                done.set()
                sampler.join()
            after = rss_of(worker)
    finally:
        stop_server(process)
    mb = [round(value / 1e6, 1) for value in (size, before, peak, after)]
    print("export {} MB; worker RSS before {} MB, peak {} MB, after {} MB".format(*mb))
    assert size > 2 * GROWTH_BOUND  # tens of MB: the messages are all there
    assert tail.endswith(b"]}")
    assert peak - before < GROWTH_BOUND, (before, peak)
    assert after - before < GROWTH_BOUND, (before, after)


def seed(uri: str, database: str, me: str, friend: str) -> None:
    """A friendship and 100,000 messages between the two, written with the builders, in batches."""
    client: MongoClient[dict[str, Any]] = MongoClient(uri, tz_aware=True, w=1, socketTimeoutMS=120_000)
    try:
        db = client[database]
        now = datetime.now(UTC)
        pair = pair_key(me, friend)
        db.friendships.insert_many(new_friendship_docs(me, friend, now))
        db.direct_conversations.insert_one(new_direct_conversation_doc(pair, MESSAGES))
        for start in range(0, MESSAGES, INSERT_BATCH):
            docs = []
            for n in range(start, start + INSERT_BATCH):
                sender, recipient = (me, friend) if n % 2 else (friend, me)
                target = {"pair": pair, "to_id": recipient}
                text = f"message {n}: " + "lorem ipsum dolor sit amet " * 6
                docs.append(new_message_doc(target, sender, text, n=n + 1, created_at=now))
            db.user_messages.insert_many(docs, ordered=False)
    finally:
        client.close()
