"""Deleting a group is final: racing adds, sends and reads, a crash midway, the events after it (issue 11)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo.database import Database

from chat_api.common.clock import epoch_ms, utc_now
from chat_api.events.service import publish_to_group, signal
from chat_api.groups import service as group_service
from chat_api.http.types import ChatApp
from chat_api.realtime.hub import Hub
from tests.factories import TestUser, add_member, create_group, create_user, make_friends
from tests.helpers import Api
from tests.realtime_helpers import fresh_hub, next_frame, no_frame, open_socket, run, ws_url

pytestmark = pytest.mark.usefixtures(fresh_hub.__name__)

# The delete starts once this many of a first crowd of adds and sends have answered (a second crowd
# starts with it), so that the others meet it at every stage of their work.
ANSWERED_BEFORE_THE_DELETE = (0, 1, 2, 4, 6)


def leftovers(sync_db: Database[dict[str, Any]], group_id: str) -> dict[str, Any]:
    """Everything of the group still in the store, but its tombstone and its `group_deleted` notice."""
    return {
        "members": list(sync_db.group_members.find({"group_id": group_id}, {"_id": 0})),
        "messages": list(sync_db.group_messages.find({"group_id": group_id}, {"_id": 0, "msg": 1})),
        "events": [
            (doc["seq"], doc["type"])
            for doc in sync_db.events.find({"data.group_id": group_id, "type": {"$ne": "group_deleted"}})
        ],
        "live group": len(list(sync_db.groups.find({"_id": ObjectId(group_id), "purge_after_ms": None}))),
    }


def nothing_left(sync_db: Database[dict[str, Any]], group_id: str) -> dict[str, Any]:
    return {"members": [], "messages": [], "events": [], "live group": 0}  # the tombstone is not a live group


def assert_gone_over_rest(api: Api, group_id: str, users: list[TestUser], *, totals: bool = True) -> None:
    """No route shows anything of the group to anyone, and the lists' totals agree with their pages
    (`totals`: not while a deletion cut short by a crash waits for the sweeper: its memberships still
    count, and GET /api/events still lists its earlier events, docs/reliability.md#deleting-a-group)."""
    for user in users:
        for path in ("", "/members", "/messages"):
            assert api.get(f"/api/groups/{group_id}{path}", headers=user.headers).status == 404
        groups = api.get("/api/groups", headers=user.headers)
        assert group_id not in [g["id"] for g in groups.json]
        if totals:
            assert int(groups.headers["X-Total-Count"]) == len(groups.json)
        conversations = api.get("/api/conversations", headers=user.headers)
        assert group_id not in [c["id"] for c in conversations.json], conversations.json
        if totals:
            events = api.get("/api/events?after=0&limit=200", headers=user.headers)
            assert [e["type"] for e in events.json if e.get("group_id") == group_id] in ([], ["group_deleted"])


def test_adds_sends_and_reads_racing_the_delete_leave_nothing_of_the_group(
    api: Api, sync_db: Database[dict[str, Any]]
) -> None:
    """The lord deletes while admins add their friends and members send, each over its own connection."""
    lord = create_user(api)
    admins = [create_user(api) for _ in range(2)]
    senders = [create_user(api) for _ in range(3)]
    newcomers = [create_user(api) for _ in range(4)]
    for admin in admins:
        for newcomer in newcomers:
            make_friends(api, admin, newcomer)
    everyone = [lord, *admins, *senders, *newcomers]
    for user in (*admins, *senders):
        make_friends(api, lord, user)

    def new_round_group() -> str:
        group_id = create_group(api, lord)
        for user in (*admins, *senders):
            assert add_member(api, group_id, lord, user).status == 201
        for admin in admins:
            url = f"/api/groups/{group_id}/members/{admin.id}"
            assert api.put(url, json={"identity": "admin"}, headers=lord.headers).status == 204
        return group_id

    async def scenario(group_id: str, answered: int) -> tuple[list[httpx.Response], list[dict[str, Any]]]:
        watcher, _ = await open_socket(ws_url(api), senders[0])
        base = f"http://{api.client.host}:{api.client.port}"
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:
            group = f"/api/groups/{group_id}"

            def send(i: int) -> Any:
                return http.post(f"{group}/messages", json={"msg": f"m{i}"}, headers=senders[i % len(senders)].headers)

            def add_newcomer(i: int) -> Any:
                return http.post(f"{group}/members", json={"user_id": newcomers[i].id}, headers=admins[i % 2].headers)

            first = [asyncio.ensure_future(r) for r in (*map(send, range(5)), add_newcomer(0), add_newcomer(1))]
            pending = set(first)
            while len(first) - len(pending) < answered:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            second = [
                http.delete(group, headers=lord.headers),
                *map(send, range(5, 10)),
                add_newcomer(2),
                add_newcomer(3),
                http.get(f"{group}/messages", headers=senders[1].headers),
                http.get(group, headers=lord.headers),
            ]
            responses = list(await asyncio.gather(*second, *first))
            await asyncio.sleep(0.3)  # anything still to be delivered arrives meanwhile
        frames = []
        try:
            while True:
                frames.append(await next_frame(watcher, timeout=0.5))
        except TimeoutError:
            pass
        await watcher.close()
        return responses, frames

    seen = set()
    for answered in ANSWERED_BEFORE_THE_DELETE:
        group_id = new_round_group()
        responses, frames = run(api, scenario(group_id, answered))
        statuses = [r.status_code for r in responses]
        seen.update(statuses)
        assert statuses[0] == 204, statuses
        odd = [(s, r.text) for s, r in zip(statuses, responses, strict=True) if s not in (200, 201, 204, 403, 404)]
        assert odd == [], odd
        # After the group's `group_deleted`, nothing of it reaches a socket.
        of_group = [f["type"] for f in frames if f.get("group_id") == group_id]
        assert of_group.count("group_deleted") == 1, of_group
        assert of_group[-1] == "group_deleted", of_group
        assert leftovers(sync_db, group_id) == nothing_left(sync_db, group_id)
        assert_gone_over_rest(api, group_id, everyone)

    assert {201, 404} <= seen, seen  # the race was run: some got in before the delete, some after
    # Later, and once the sweepers have dropped the tombstones: still nothing.
    later = epoch_ms(utc_now()) + group_service.PURGE_DELAY_MS + 1
    run(api, group_service.sweep_deleted_groups(now_ms=later))
    assert list(sync_db.groups.find({"purge_after_ms": {"$gt": 0}})) == []
    assert sync_db.group_members.count_documents({"user_id": {"$in": [u.id for u in newcomers]}}) == 0


def test_a_delete_answered_204_leaves_only_a_tombstone_and_its_notice(
    api: Api, sync_db: Database[dict[str, Any]]
) -> None:
    lord, member = create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,))
    assert api.post(f"/api/groups/{group_id}/messages", json={"msg": "hi"}, headers=member.headers).status == 201
    assert api.delete(f"/api/groups/{group_id}", headers=lord.headers).status == 204
    assert leftovers(sync_db, group_id) == nothing_left(sync_db, group_id)
    tombstone = sync_db.groups.find_one({"_id": ObjectId(group_id)})
    assert tombstone is not None
    assert tombstone["purge_after_ms"] > epoch_ms(utc_now())
    notice = sync_db.events.find_one({"type": "group_deleted"})
    assert notice is not None
    assert notice["data"] == {"group_id": group_id}
    assert (notice["group"], notice["to"]) == (group_id, []), "named by the group, not its members"
    # The group's earlier events are redacted: nobody, nothing.
    redacted = [(e["to"], e["group"], e["data"]) for e in sync_db.events.find({"type": "group_message"})]
    assert redacted == [([], None, {})]
    assert_gone_over_rest(api, group_id, [lord, member])
    # Deleting it again, adding to it or sending to it: 404 (members are gone too: nothing opens it).
    assert api.delete(f"/api/groups/{group_id}", headers=lord.headers).status == 404
    make_friends(api, lord, other := create_user(api))
    assert add_member(api, group_id, lord, other).status == 404
    assert api.post(f"/api/groups/{group_id}/messages", json={"msg": "x"}, headers=lord.headers).status == 404


def test_a_purge_cut_short_is_finished_by_the_sweeper(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    """Only the first step (the tombstone) ran: the group is already gone for every route, and the next
    sweep purges the rest; the tombstone itself goes once its time has come."""
    lord, member = create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,))
    assert api.post(f"/api/groups/{group_id}/messages", json={"msg": "hi"}, headers=member.headers).status == 201
    assert run(api, group_service.tombstone_group(group_id)) is True
    assert_gone_over_rest(api, group_id, [lord, member], totals=False)
    assert sync_db.group_members.count_documents({"group_id": group_id}) == 2  # cut short here
    assert run(api, group_service.sweep_deleted_groups()) == [group_id]
    assert leftovers(sync_db, group_id) == nothing_left(sync_db, group_id)
    assert_gone_over_rest(api, group_id, [lord, member])
    assert sync_db.groups.find_one({"_id": ObjectId(group_id)}) is not None  # the tombstone, until its time
    later = epoch_ms(utc_now()) + group_service.PURGE_DELAY_MS + 1
    assert run(api, group_service.sweep_deleted_groups(now_ms=later)) == [group_id]
    assert sync_db.groups.find_one({"_id": ObjectId(group_id)}) is None
    assert run(api, group_service.sweep_deleted_groups(now_ms=later)) == []


def test_each_worker_sweeps_at_start_and_learns_the_deleted_groups(app: ChatApp, api: Api) -> None:
    """A hub started after a deletion drops the group's events too: it reads the tombstones as it starts."""
    lord = create_user(api)
    group_id = create_group(api, lord)
    run(api, group_service.tombstone_group(group_id))
    hub: Hub = app.ctx.hub
    hub.deleted_groups.clear()
    run(api, hub._sweep_groups())
    assert group_id in hub.deleted_groups
    assert hub.hides({"type": "group_message", "data": {"group_id": group_id}})
    assert not hub.hides({"type": "group_deleted", "data": {"group_id": group_id}})
    assert not hub.hides({"type": "group_message", "data": {"group_id": str(ObjectId())}})


def test_no_event_of_a_group_is_delivered_or_replayed_after_its_group_deleted(
    api: Api, sync_db: Database[dict[str, Any]]
) -> None:
    """An event a racing send published after the notice (before it saw the tombstone and redacted it)
    reaches no socket, live or on resume; a resume after the notice replays none of the group's events."""
    lord, member = create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,))

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        ws, ready = await open_socket(ws_url(api), member)
        message = {"id": "x", "group_id": group_id, "msg": "late"}
        await publish_to_group(
            "group_message", group_id, {"group_id": group_id, "message": {**message, "msg": "early"}}
        )
        await publish_to_group("group_deleted", group_id, {"group_id": group_id})
        await publish_to_group("group_message", group_id, {"group_id": group_id, "message": message})
        await signal("typing", {"from_id": lord.id, "group_id": group_id}, group=group_id)
        live = [await next_frame(ws), await next_frame(ws)]
        await no_frame(ws, 0.5)
        await ws.close()
        resumed_ws, _ = await open_socket(ws_url(api), member, last_seq=ready["seq"])
        resumed = [await next_frame(resumed_ws)]
        await no_frame(resumed_ws, 0.5)
        await resumed_ws.close()
        return live, resumed

    live, resumed = run(api, scenario())
    assert [(f["type"], f.get("message", {}).get("msg")) for f in live] == [
        ("group_message", "early"),
        ("group_deleted", None),
    ]
    # On resume, the group's notice only: the hub knows it is deleted, and nothing of it is replayed.
    assert [f["type"] for f in resumed] == ["group_deleted"]
