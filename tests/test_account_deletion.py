"""Deleting an account (docs/api.md, "Delete your account"): complete, over real HTTP and WebSocket, even when the
process dies halfway (the sweeper), and with `?erase=true`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from beanie import init_beanie
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.database import Database

from bench.round_trips import CommandCounter
from chat_api.accounts import service as accounts
from chat_api.common.clock import epoch_ms, utc_now
from chat_api.friends import repository as friends_repository
from chat_api.groups import repository as groups_repository
from chat_api.http.types import ChatApp
from chat_api.store.documents import DOCUMENT_MODELS
from chat_api.users import repository as users_repository
from tests.conftest import OtherApp
from tests.factories import TestUser, create_user, make_friends, user_payload
from tests.helpers import (
    Api,
    running_server,
)
from tests.realtime_helpers import close_code, frames_until, fresh_hub, next_frame, open_socket, run, ws_url
from tests.test_two_workers import register_and_log_in, sockets_on_both_workers

pytestmark = pytest.mark.usefixtures(fresh_hub.__name__)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x01" * 64


class Recorded:
    """Every status the API answered in a test: none may be a 500."""

    def __init__(self, api: Api):
        self.api = api
        self.statuses: list[tuple[str, str, int]] = []

    def __call__(self, method: str, path: str, user: TestUser | None = None, **kwargs: Any) -> Any:
        headers = user.headers if user is not None else {}
        response = self.api.request(method, path, headers=headers, **kwargs)
        self.statuses.append((method, path, response.status))
        return response

    def no_500(self) -> None:
        assert [s for s in self.statuses if s[2] >= 500] == []


@pytest.fixture
def call(api: Api) -> Iterator[Recorded]:
    recorded = Recorded(api)
    yield recorded
    recorded.no_500()


def send_direct(call: Recorded, sender: TestUser, to: TestUser, text: str, msg_type: str = "txt") -> dict[str, Any]:
    response = call("post", "/api/user-message", sender, json={"to_id": to.id, "msg": text, "msg_type": msg_type})
    assert response.status == 201, response.text
    message: dict[str, Any] = response.json["message"]
    return message


def new_group(call: Recorded, lord: TestUser, *members: TestUser) -> str:
    response = call("post", "/api/groups", lord, json={"group_name": "crew"})
    assert response.status == 201, response.text
    group_id: str = response.json["group_id"]
    for member in members:
        added = call("post", f"/api/groups/{group_id}/members", lord, json={"user_id": member.id})
        assert added.status == 201, added.text
    return group_id


def send_group(call: Recorded, sender: TestUser, group_id: str, text: str) -> dict[str, Any]:
    response = call("post", f"/api/groups/{group_id}/messages", sender, json={"msg": text})
    assert response.status == 201, response.text
    return dict(response.json)


def listed(call: Recorded, user: TestUser, path: str) -> tuple[list[dict[str, Any]], int]:
    """Every item of a paged list (paged through, 2 at a time) and its X-Total-Count, which must agree."""
    items: list[dict[str, Any]] = []
    totals = set()
    while True:
        joiner = "&" if "?" in path else "?"
        response = call("get", f"{path}{joiner}limit=2&offset={len(items)}", user)
        assert response.status == 200, response.text
        totals.add(int(response.headers["x-total-count"]))
        items.extend(response.json)
        if len(response.json) < 2:
            break
    assert len(totals) == 1, totals
    total = totals.pop()
    assert total == len(items), (path, total, items)
    return items, total


def delete_account(call: Recorded, user: TestUser, query: str = "") -> None:
    response = call("delete", f"/api/users/{user.id}{query}", user)
    assert response.status == 200, response.text
    assert response.json == {"message": "User deleted"}


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


def history(call: Recorded, me: TestUser, other_id: str) -> list[dict[str, Any]]:
    response = call("get", f"/api/user-message/{me.id}/{other_id}", me)
    assert response.status == 200, response.text
    return list(response.json)


async def delete_over_http(api: Api, user: TestUser, query: str = "") -> None:
    async with httpx.AsyncClient(base_url=f"http://{api.client.host}:{api.client.port}") as http:
        response = await http.delete(f"/api/users/{user.id}{query}", headers=user.headers)
        assert response.status_code == 200, response.text


def test_a_lord_who_deletes_their_account_leaves_everything_else_right(api: Api, call: Recorded) -> None:
    """The issue's "done when": three friends, a group, direct and group messages, then the lord leaves."""
    lord, bea, cid = create_user(api), create_user(api), create_user(api)
    make_friends(api, lord, bea)
    make_friends(api, lord, cid)
    make_friends(api, bea, cid)
    group_id = new_group(call, lord, bea, cid)
    sent = [
        send_direct(call, lord, bea, "hello bea"),
        send_direct(call, bea, lord, "hi lord"),
        send_direct(call, lord, cid, "hello cid"),
        send_direct(call, bea, cid, "between us"),
    ]
    group_sent = [send_group(call, user, group_id, f"{user.username} here") for user in (lord, bea, cid)]

    async def scenario() -> dict[str, Any]:
        first, _ = await open_socket(ws_url(api), lord)
        second, _ = await open_socket(ws_url(api), lord)
        watcher, _ = await open_socket(ws_url(api), bea)
        started = time.monotonic()
        await delete_over_http(api, lord)
        codes = await asyncio.gather(close_code(first, timeout=1), close_code(second, timeout=1))
        closed_within = time.monotonic() - started
        frames = await frames_until(watcher, lambda got: any(f["type"] == "group_lord_changed" for f in got))
        await watcher.close()
        return {"codes": codes, "closed_within": closed_within, "frames": frames}

    outcome = run(api, scenario())
    assert outcome["codes"] == [4401, 4401]
    assert outcome["closed_within"] < 1.0
    changed = next(f for f in outcome["frames"] if f["type"] == "group_lord_changed")
    # bea was added first: the longest-standing member (no admin).
    assert {k: changed[k] for k in ("group_id", "lord_id", "previous_lord_id")} == {
        "group_id": group_id,
        "lord_id": bea.id,
        "previous_lord_id": lord.id,
    }

    # The account is gone: its token, its profile.
    assert call("get", "/api/getUser", lord).status == 401
    assert call("get", f"/api/users/{lord.id}", bea).status == 404

    # The group carries on under its new lord, who can manage it; the members list and its count agree.
    group = call("get", f"/api/groups/{group_id}", bea)
    assert group.status == 200
    assert (group.json["lord_id"], group.json["identity"]) == (bea.id, "lord")
    members, total = listed(call, bea, f"/api/groups/{group_id}/members")
    assert sorted(ids(members)) == sorted([bea.id, cid.id])
    assert total == 2
    assert call("put", f"/api/groups/{group_id}", bea, json={"group_name": "crew 2"}).status == 204
    assert call("post", f"/api/groups/{group_id}/messages", bea, json={"msg": "carry on"}).status == 201

    # Histories are intact, with the deleted account's from_id.
    assert [m["msg"] for m in reversed(history(call, bea, lord.id))] == ["hello bea", "hi lord"]
    assert [m["from_id"] for m in reversed(history(call, bea, lord.id))] == [lord.id, bea.id]
    assert [m["msg"] for m in history(call, cid, lord.id)] == ["hello cid"]
    group_history = call("get", f"/api/groups/{group_id}/messages", cid).json
    assert [m["id"] for m in reversed(group_history)][:3] == [m["id"] for m in group_sent]
    assert group_history[-1]["from_id"] == lord.id
    assert sent[0]["id"] in ids(history(call, bea, lord.id))

    # Friend lists and their counts.
    for user, other in ((bea, cid), (cid, bea)):
        friends, total = listed(call, user, "/api/friends")
        assert ids(friends) == [other.id]
        assert total == 1

    # Conversation lists and their counts: the one with the deleted account stays, read-only, as a placeholder.
    for user in (bea, cid):
        conversations, total = listed(call, user, "/api/conversations")
        assert total == 3
        deleted = [c for c in conversations if c["id"] == lord.id]
        assert len(deleted) == 1
        assert deleted[0]["name"] == "Deleted account"
        assert deleted[0]["deleted"] is True
        assert deleted[0]["avatar"] is None
        assert all(c["deleted"] is False for c in conversations if c["id"] != lord.id)
    # Read-only: nothing can be sent to it, and its unread count can still be cleared.
    refused = call("post", "/api/user-message", bea, json={"to_id": lord.id, "msg": "are you there?"})
    assert refused.status == 404
    assert refused.json == {"message": "User not found"}
    assert call("put", f"/api/conversations/user/{lord.id}/read", bea).status == 204


def test_its_tokens_and_every_socket_close_with_4401_within_a_second(api: Api, call: Recorded) -> None:
    me, friend = create_user(api), create_user(api)
    make_friends(api, me, friend)

    async def scenario() -> tuple[list[int | None], float, dict[str, Any]]:
        by_frame, _ = await open_socket(ws_url(api), me)
        by_query = await _query_socket(api, me)
        watcher, _ = await open_socket(ws_url(api), friend)
        started = time.monotonic()
        await delete_over_http(api, me)
        codes = list(await asyncio.gather(close_code(by_frame, timeout=1), close_code(by_query, timeout=1)))
        elapsed = time.monotonic() - started
        # The friend hears the account went offline, and its own socket stays open.
        presence = await frames_until(watcher, lambda got: any(f["type"] == "presence" for f in got))
        await watcher.send(json.dumps({"type": "ping"}))
        assert await next_frame(watcher) == {"type": "pong"}
        await watcher.close()
        return codes, elapsed, presence[-1]

    codes, elapsed, presence = run(api, scenario())
    assert codes == [4401, 4401]
    assert elapsed < 1.0
    assert {k: presence[k] for k in ("user_id", "flag")} == {"user_id": me.id, "flag": "offline"}
    assert call("get", "/api/getUser", me).status == 401
    assert call("delete", f"/api/users/{me.id}", me).status == 401

    async def reconnect() -> int | None:
        return await close_code(await _query_socket(api, me, ready=False), timeout=3)

    assert run(api, reconnect()) == 4401


async def _query_socket(api: Api, user: TestUser, ready: bool = True) -> Any:
    from urllib.parse import quote

    from websockets.asyncio.client import connect

    ws = await connect(ws_url(api, f"?token={quote(user.token)}"))
    if ready:
        assert (await next_frame(ws))["type"] == "ready"
    return ws


def test_its_friendships_and_waiting_requests_go_on_both_sides(api: Api, call: Recorded) -> None:
    me, friend, asked, asking = create_user(api), create_user(api), create_user(api), create_user(api)
    make_friends(api, me, friend)
    outgoing = call("post", "/api/user-requests", me, json={"to_id": asked.id, "verify_data": "hi"})
    incoming = call("post", "/api/user-requests", asking, json={"to_id": me.id, "verify_data": "hi"})
    assert outgoing.status == incoming.status == 201
    delete_account(call, me)

    assert listed(call, friend, "/api/friends") == ([], 0)
    assert listed(call, asked, "/api/user-requests") == ([], 0)
    assert listed(call, asking, "/api/user-requests") == ([], 0)
    answer = call("put", f"/api/user-requests/{outgoing.json['user_request_id']}", asked, json={"status": "agree"})
    assert answer.status == 404
    assert listed(call, asked, "/api/friends") == ([], 0)
    # Unfriending it: it is no friend (the read-only conversation stays).
    assert call("delete", f"/api/friends/{me.id}", friend).status == 404


def test_every_route_or_frame_naming_it_answers_as_for_an_unknown_user(api: Api, call: Recorded) -> None:
    me, friend = create_user(api), create_user(api)
    make_friends(api, me, friend)
    send_direct(call, me, friend, "bye")
    group_id = new_group(call, friend)
    delete_account(call, me)

    unknown = {"message": "User not found"}
    message = call("post", "/api/user-message", friend, json={"to_id": me.id, "msg": "hello?"})
    assert (message.status, message.json) == (404, unknown)
    request = call("post", "/api/user-requests", friend, json={"to_id": me.id, "verify_data": "again"})
    assert (request.status, request.json) == (404, unknown)
    added = call("post", f"/api/groups/{group_id}/members", friend, json={"user_id": me.id})
    assert (added.status, added.json) == (404, unknown)
    assert call("get", f"/api/users/{me.id}", friend).status == 404

    async def typing() -> dict[str, Any]:
        ws, _ = await open_socket(ws_url(api), friend)
        await ws.send(json.dumps({"type": "typing", "to_id": me.id}))
        frame = await next_frame(ws)
        await ws.close()
        return frame

    assert run(api, typing()) == {"type": "error", "message": "no such user"}
    # Nothing was stored by the refused message.
    assert [m["msg"] for m in history(call, friend, me.id)] == ["bye"]


def test_its_email_and_chat_id_are_free_again(api: Api, call: Recorded) -> None:
    me = create_user(api)
    delete_account(call, me)
    again = call("post", "/api/register", json=user_payload(api, email=me.email, chat_id=me.chat_id))
    assert again.status == 201, again.text
    assert again.json["user_id"] != me.id


def test_a_lords_groups_pass_to_the_longest_standing_admin_else_member_and_empty_ones_go(
    api: Api, call: Recorded, sync_db: Database[dict[str, Any]]
) -> None:
    lord, first, admin, later_admin, member = (create_user(api) for _ in range(5))
    for user in (first, admin, later_admin, member):
        make_friends(api, lord, user)
    with_admins = new_group(call, lord, first, admin, later_admin)
    for user in (later_admin, admin):  # promoted in the other order: joining time decides, not promotion
        promoted = call("put", f"/api/groups/{with_admins}/members/{user.id}", lord, json={"identity": "admin"})
        assert promoted.status == 204, promoted.text
    without_admins = new_group(call, lord, member, first)
    alone = new_group(call, lord)
    send_group(call, lord, alone, "only me")
    plain_member_of = new_group(call, first, lord)  # the deleted account is a plain member here
    delete_account(call, lord)

    group = call("get", f"/api/groups/{with_admins}", admin).json
    assert (group["lord_id"], group["identity"]) == (admin.id, "lord")
    members, total = listed(call, admin, f"/api/groups/{with_admins}/members")
    assert {m["id"]: m["identity"] for m in members} == {first.id: "user", admin.id: "lord", later_admin.id: "admin"}
    group = call("get", f"/api/groups/{without_admins}", member).json
    assert group["lord_id"] == member.id
    # The group left without members is deleted, with its messages.
    # Deleted as any group is (docs/reliability.md, "Deleting a group"): a tombstone until its purge delay is over.
    tombstone = sync_db["groups"].find_one({"_id": ObjectId(alone)})
    assert tombstone is None or tombstone.get("purge_after_ms") is not None
    assert sync_db["group_messages"].find_one({"group_id": {"$eq": alone}}) is None
    assert sync_db["group_members"].find_one({"user_id": {"$eq": lord.id}}) is None
    members, total = listed(call, first, f"/api/groups/{plain_member_of}/members")
    assert ids(members) == [first.id]
    assert total == 1
    assert call("get", f"/api/groups/{plain_member_of}", first).json["lord_id"] == first.id

    # Every member heard of the new lord, as a stored event (replayed on resume, listed by /api/events).
    for user, group_id, lord_id in ((first, with_admins, admin.id), (member, without_admins, member.id)):
        events = call("get", "/api/events", user).json
        changes = [e for e in events if e["type"] == "group_lord_changed" and e["group_id"] == group_id]
        assert len(changes) == 1
        assert changes[0]["lord_id"] == lord_id


def test_erase_blanks_every_message_it_sent_and_deletes_its_files(api: Api, call: Recorded) -> None:
    me, friend, other = create_user(api), create_user(api), create_user(api)
    make_friends(api, me, friend)
    make_friends(api, me, other)
    make_friends(api, friend, other)
    upload = call("post", "/api/upload/image", me, files={"file": ("a.png", PNG, "image/png")})
    assert upload.status == 201, upload.text
    url = upload.json["url"]
    assert call("get", url).status == 200
    send_direct(call, friend, me, "before")
    send_direct(call, me, friend, "my secret")
    send_direct(call, me, friend, url, "img")
    send_direct(call, other, me, "last word is mine")
    group_id = new_group(call, friend, me, other)
    send_group(call, friend, group_id, "friend says")
    send_group(call, me, group_id, "my group secret")
    delete_account(call, me, "?erase=true")

    assert call("get", url).status == 404
    messages = list(reversed(history(call, friend, me.id)))
    assert [(m["msg"], m["msg_type"], m["erased"], m["from_id"]) for m in messages] == [
        ("before", "txt", False, friend.id),
        ("", "txt", True, me.id),
        ("", "txt", True, me.id),
    ]
    group_messages = list(reversed(call("get", f"/api/groups/{group_id}/messages", other).json))
    assert [(m["msg"], m["erased"], m["from_id"]) for m in group_messages] == [
        ("friend says", False, friend.id),
        ("", True, me.id),
    ]
    conversations = {c["id"]: c for c in listed(call, friend, "/api/conversations")[0]}
    for summarised in (me.id, group_id):
        last = conversations[summarised]["last_message"]
        assert (last["from_id"], last["msg"], last["msg_type"]) == (me.id, "", "txt")
    # The other's last message was their own: left as it was.
    last = {c["id"]: c for c in listed(call, other, "/api/conversations")[0]}[me.id]["last_message"]
    assert (last["from_id"], last["msg"]) == (other.id, "last word is mine")
    assert history(call, other, me.id)[0]["erased"] is False


def test_without_erase_the_messages_and_files_stay(api: Api, call: Recorded) -> None:
    me, friend = create_user(api), create_user(api)
    make_friends(api, me, friend)
    upload = call("post", "/api/upload/image", me, files={"file": ("a.png", PNG, "image/png")})
    send_direct(call, me, friend, "kept")
    delete_account(call, me, "?erase=false")
    assert call("get", upload.json["url"]).status == 200
    assert [(m["msg"], m["erased"]) for m in history(call, friend, me.id)] == [("kept", False)]


@pytest.mark.parametrize("query", ["?erase=maybe", "?erase=", "?erasure=true", "?erase=true&x=1"])
def test_a_bad_query_is_400_and_deletes_nothing(api: Api, call: Recorded, query: str) -> None:
    me = create_user(api)
    response = call("delete", f"/api/users/{me.id}{query}", me)
    assert response.status == 400, response.text
    assert "message" in response.json
    assert call("get", "/api/getUser", me).status == 200


def test_deleting_another_account_keeps_its_status_codes(api: Api, call: Recorded) -> None:
    me, other = create_user(api), create_user(api)
    assert call("delete", f"/api/users/{other.id}", me).status == 403
    assert call("delete", f"/api/users/{ObjectId()}", me).status == 404
    assert call("delete", f"/api/users/{me.id}").status == 401
    assert call("get", "/api/getUser", other).status == 200


# Crashes: the steps a request that died would have left, finished by the sweeper.


def _expired_lease() -> int:
    return epoch_ms(utc_now()) - 1


async def _died_after_friendships_began(me: TestUser, erase: bool) -> None:
    """What a request leaves that died after deleting the user and the requests, before the friendships."""
    oid = ObjectId(me.id)
    now = utc_now() - timedelta(minutes=5)
    await users_repository.mark_deletion(oid, erase, now, _expired_lease())
    await users_repository.delete_user(oid)
    await friends_repository.delete_waiting_requests_of(me.id)


def test_a_deletion_cut_short_is_finished_by_the_sweeper(api: Api, call: Recorded) -> None:
    me, friend, other = create_user(api), create_user(api), create_user(api)
    make_friends(api, me, friend)
    make_friends(api, me, other)
    send_direct(call, me, friend, "hello")
    group_id = new_group(call, me, friend, other)
    run(api, _died_after_friendships_began(me, erase=False))

    # The state a crash leaves: the friend still lists (and counts) a friendship with nobody.
    response = call("get", "/api/friends", friend)
    assert (response.json, response.headers["x-total-count"]) == ([], "1")

    assert run(api, accounts.sweep()) == 1
    assert listed(call, friend, "/api/friends") == ([], 0)
    conversations, total = listed(call, friend, "/api/conversations")
    assert total == 2
    assert {c["id"] for c in conversations} == {me.id, group_id}
    assert call("get", f"/api/groups/{group_id}", friend).json["lord_id"] == friend.id
    # Idempotent: nothing left to do.
    assert run(api, accounts.sweep()) == 0


def test_a_succession_cut_short_ends_with_one_lord_and_one_announcement(
    api: Api, call: Recorded, sync_db: Database[dict[str, Any]]
) -> None:
    lord, heir, member = create_user(api), create_user(api), create_user(api)
    make_friends(api, lord, heir)
    make_friends(api, lord, member)
    group_id = new_group(call, lord, heir, member)

    async def died_after_promoting() -> None:
        await _died_after_friendships_began(lord, erase=False)
        heir_membership = await groups_repository.membership(group_id, heir.id, {"_id": 1})
        assert heir_membership is not None
        await groups_repository.promote_to_lord(heir_membership["_id"])

    run(api, died_after_promoting())
    assert run(api, accounts.sweep()) == 1
    members = {m["user_id"]: m["identity"] for m in sync_db["group_members"].find({"group_id": {"$eq": group_id}})}
    assert members == {heir.id: "lord", member.id: "user"}
    assert call("get", f"/api/groups/{group_id}", member).json["lord_id"] == heir.id
    events = call("get", "/api/events", member).json
    assert [e["lord_id"] for e in events if e["type"] == "group_lord_changed"] == [heir.id]


def test_a_deletion_still_held_by_its_request_is_left_to_it(api: Api, call: Recorded) -> None:
    me, friend = create_user(api), create_user(api)
    make_friends(api, me, friend)

    async def held() -> int:
        await users_repository.mark_deletion(ObjectId(me.id), False, utc_now(), epoch_ms(utc_now()) + 60_000)
        return await accounts.sweep()

    assert run(api, held()) == 0
    assert call("get", "/api/getUser", me).status == 200
    # Once the lease has run out, the sweeper takes it over.
    assert run(api, accounts.sweep(epoch_ms(utc_now()) + 61_000)) == 1
    assert call("get", "/api/getUser", me).status == 401
    assert listed(call, friend, "/api/friends") == ([], 0)


def test_an_erasure_cut_short_is_finished_with_its_erasure(api: Api, call: Recorded) -> None:
    me, friend = create_user(api), create_user(api)
    make_friends(api, me, friend)
    upload = call("post", "/api/upload/voice", me, files={"file": ("a", b"OggS\x00\x02" + b"\x01" * 64, "audio/ogg")})
    send_direct(call, me, friend, "erase me")
    run(api, _died_after_friendships_began(me, erase=True))
    assert run(api, accounts.sweep()) == 1
    assert [(m["msg"], m["erased"]) for m in history(call, friend, me.id)] == [("", True)]
    assert call("get", upload.json["url"]).status == 404


def test_a_sweep_with_nothing_to_do_is_one_indexed_query(
    api: Api, app: ChatApp, store_uri: str, db_name: str, sync_db: Database[dict[str, Any]]
) -> None:
    counter = CommandCounter()

    async def counted_sweep() -> int:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(store_uri, tz_aware=True, event_listeners=[counter])
        try:
            await init_beanie(database=client[db_name], document_models=DOCUMENT_MODELS, skip_indexes=True)
            counter.recording = True
            finished = await accounts.sweep()
            counter.recording = False
            return finished
        finally:
            await init_beanie(database=app.ctx.database, document_models=DOCUMENT_MODELS, skip_indexes=True)
            await client.close()

    assert run(api, counted_sweep()) == 0
    assert counter.commands == [("find", "account_deletions")]
    plan = sync_db.command(
        "explain",
        {"find": "account_deletions", "filter": {"lease_until_ms": {"$lt": 1}}, "sort": {"lease_until_ms": 1}},
    )
    assert "lease_until_ms" in str(plan["queryPlanner"]["winningPlan"])
    # Periodic, not a polling loop.
    assert accounts.SWEEP_INTERVAL >= 60


def test_every_worker_sweeps_at_start_up_and_then_periodically(
    api: Api, call: Recorded, other_app: OtherApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    at_start, later, friend = create_user(api), create_user(api), create_user(api)
    make_friends(api, at_start, friend)
    make_friends(api, later, friend)
    run(api, _died_after_friendships_began(at_start, erase=False))
    monkeypatch.setattr(accounts, "SWEEP_INTERVAL", 0.2)
    with other_app() as client:
        # Finished before the new worker served its first request (its own secret: a token of its own).
        _, login = client.post("/api/login", json={"chat_id": friend.chat_id, "password": friend.password})
        headers = {"Authorization": login.json["token"]}
        _, response = client.get("/api/friends", headers=headers)
        assert ids(response.json) == [later.id]
        assert response.headers["x-total-count"] == "1"
        client._run(_died_after_friendships_began(later, erase=False))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            _, response = client.get("/api/friends", headers=headers)
            if response.headers["x-total-count"] == "0":
                break
            time.sleep(0.1)
        assert (response.json, response.headers["x-total-count"]) == ([], "0")


@pytest.mark.no_store  # the server under test runs a store of its own
def test_every_socket_on_every_worker_closes_with_4401(tmp_path: Path) -> None:
    """`python -m chat_api` with two workers: the account's sockets on both close within a second of the 200."""
    with running_server(tmp_path, WEB_CONCURRENCY="2") as (_, port):
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as http:
            user_id, token = register_and_log_in(http)

        async def scenario() -> tuple[set[int], set[int | None], float]:
            sockets, worker_of = await sockets_on_both_workers(f"ws://127.0.0.1:{port}/ws", token)
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                started = time.monotonic()
                deleted = await client.delete(f"/api/users/{user_id}", headers={"Authorization": token})
                assert deleted.status_code == 200, deleted.text
            codes = await asyncio.gather(*(close_code(ws, timeout=2) for ws in sockets))
            return set(worker_of.values()), set(codes), time.monotonic() - started

        workers, codes, elapsed = asyncio.run(scenario())
        assert len(workers) == 2, f"every socket landed on one worker; see {tmp_path / 'server.log'}"
        assert codes == {4401}
        assert elapsed < 1.5  # the request itself included
