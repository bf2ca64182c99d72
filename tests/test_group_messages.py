"""Group messages over real HTTP: sending, validation, idempotent retries, the one event per message, the
history by cursor and its index, and the store round trips of every group route."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo.database import Database

from bench.round_trips import CommandCounter, RoundTrips
from chat_api.common.clock import utc_now
from chat_api.groups.models import new_member_doc
from chat_api.groups.repository import group_messages
from chat_api.messages.models import new_message_doc
from chat_api.store import client as store
from tests.conftest import OtherApp
from tests.factories import (
    INVALID_MESSAGE_BODIES,
    TestUser,
    add_member,
    create_group,
    create_user,
    make_friends,
    send_group,
)
from tests.helpers import Api
from tests.realtime_helpers import fresh_hub, next_frame, no_frame, open_socket, run, ws_url
from tests.test_groups import UNKNOWN_ID


def history(api: Api, group_id: str, user: TestUser, query: str = "") -> Any:
    return api.get(f"/api/groups/{group_id}/messages{query}", headers=user.headers)


def group_events(sync_db: Database[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(sync_db.events.find({"type": "group_message"}).sort("seq", 1))


def stored_file(sync_db: Database[dict[str, Any]]) -> str:
    """A GridFS file entry, as an upload leaves it (its bytes do not matter here)."""
    file_id = ObjectId()
    sync_db["fs.files"].insert_one(
        {"_id": file_id, "length": 3, "chunkSize": 261120, "uploadDate": file_id.generation_time, "filename": "a.png"}
    )
    return f"/api/files/{file_id}"


# Sending


def test_a_member_sends_a_message(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    lord, member = create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,))
    response = send_group(api, group_id, member, "hi all")
    assert response.status == 201, response.text
    body = response.json
    assert body["group_message_id"] == body["id"]
    assert (body["group_id"], body["from_id"], body["msg"], body["msg_type"]) == (group_id, member.id, "hi all", "txt")
    assert body["client_msg_id"] is None
    assert isinstance(body["seq"], int)
    shown = history(api, group_id, lord).json
    assert [m["id"] for m in shown] == [body["id"]]
    assert shown[0]["seq"] == body["seq"]


def test_send_publishes_one_event_naming_the_group(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    lord, admin, member = create_user(api), create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,), admins=(admin,))
    body = send_group(api, group_id, member, "to everyone").json
    events = group_events(sync_db)
    assert len(events) == 1
    event = events[0]
    assert event["seq"] == body["seq"]
    assert (event["group"], event["to"]) == (group_id, []), "the group, not its members"
    assert event["data"]["group_id"] == group_id
    assert event["data"]["message"]["id"] == body["id"]
    assert event["data"]["message"]["msg"] == "to everyone"
    assert event["transient"] is False


def test_send_sets_the_groups_last_message(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    lord, member = create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,))
    send_group(api, group_id, lord, "first")
    last = send_group(api, group_id, member, "second").json
    group = sync_db.groups.find_one({"_id": ObjectId(group_id)})
    assert group is not None
    assert (group["last_n"], group["message_n"]) == (2, 2)
    assert group["last_message"]["id"] == last["id"]
    assert group["last_message"]["msg"] == "second"
    assert group["last_message"]["from_id"] == member.id
    assert set(group["last_message"]) == {"id", "from_id", "msg", "msg_type", "created_at"}


def test_a_message_moves_only_its_own_groups_last_message(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    lord = create_user(api)
    older, newer = create_group(api, lord), create_group(api, lord)
    kept = send_group(api, older, lord, "in the older group").json["id"]
    last = send_group(api, newer, lord, "in the newer group").json["id"]
    stored = {str(g["_id"]): (g["last_message"]["id"], g["message_n"]) for g in sync_db.groups.find()}
    assert stored == {older: (kept, 1), newer: (last, 1)}


def test_a_new_member_has_read_what_was_said_before_they_joined(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    lord, friend = create_user(api), create_user(api)
    group_id = create_group(api, lord)
    send_group(api, group_id, lord, "before you came")
    make_friends(api, lord, friend)
    assert add_member(api, group_id, lord, friend).status == 201
    joined = sync_db.group_members.find_one({"group_id": group_id, "user_id": friend.id})
    assert joined is not None
    assert joined["read_n"] == 1
    lord_membership = sync_db.group_members.find_one({"group_id": group_id, "user_id": lord.id})
    assert lord_membership is not None
    assert lord_membership["read_n"] == 0


@pytest.mark.usefixtures(fresh_hub.__name__)
def test_a_former_member_no_longer_receives_the_event(api: Api) -> None:
    """Live and on resume: after `group_left` (in the member's own order), the group's messages are not theirs."""
    lord, member = create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,))

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        ws, ready = await open_socket(ws_url(api), member)
        async with httpx.AsyncClient(base_url=f"http://{api.client.host}:{api.client.port}") as http:
            url = f"/api/groups/{group_id}/messages"
            assert (await http.post(url, json={"msg": "before"}, headers=lord.headers)).status_code == 201
            leave = await http.delete(f"/api/groups/{group_id}/members/{member.id}", headers=member.headers)
            assert leave.status_code == 204
            assert (await http.post(url, json={"msg": "after"}, headers=lord.headers)).status_code == 201
        live = [await next_frame(ws), await next_frame(ws)]
        await no_frame(ws)
        await ws.close()
        resumed_ws, _ = await open_socket(ws_url(api), member, last_seq=ready["seq"])
        resumed = [await next_frame(resumed_ws), await next_frame(resumed_ws)]
        await no_frame(resumed_ws)
        await resumed_ws.close()
        return live, resumed

    live, resumed = run(api, scenario())
    for frames in (live, resumed):
        assert [(f["type"], f.get("message", {}).get("msg")) for f in frames] == [
            ("group_message", "before"),
            ("group_left", None),
        ]
        assert frames[1]["group_id"] == group_id


def test_send_to_a_group_by_a_non_member_is_forbidden(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    lord, stranger = create_user(api), create_user(api)
    group_id = create_group(api, lord)
    response = send_group(api, group_id, stranger)
    assert response.status == 403
    assert response.json["message"]
    assert sync_db.group_messages.count_documents({}) == 0
    assert group_events(sync_db) == []


@pytest.mark.parametrize("group_id", [UNKNOWN_ID, "bad"])
def test_send_to_an_unknown_group_is_404(api: Api, group_id: str) -> None:
    user = create_user(api)
    assert send_group(api, group_id, user).status == 404


@pytest.mark.parametrize("body", [*INVALID_MESSAGE_BODIES, {"msg": "hi", "group_id": UNKNOWN_ID}])
def test_send_with_invalid_body_is_400(api: Api, body: dict[str, Any], sync_db: Database[dict[str, Any]]) -> None:
    lord = create_user(api)
    group_id = create_group(api, lord)
    response = api.post(f"/api/groups/{group_id}/messages", json=body, headers=lord.headers)
    assert response.status == 400, response.text
    assert sync_db.group_messages.count_documents({}) == 0


def test_a_message_of_4000_characters_is_accepted(api: Api) -> None:
    lord = create_user(api)
    group_id = create_group(api, lord)
    assert send_group(api, group_id, lord, "é" * 4000).status == 201


@pytest.mark.parametrize(
    "msg",
    ["https://example.com/a.png", f"/api/files/{UNKNOWN_ID}", "/api/files/xyz", "hello", f"x/api/files/{UNKNOWN_ID}"],
)
@pytest.mark.parametrize("msg_type", ["img", "voice"])
def test_img_or_voice_without_a_stored_file_url_is_400(api: Api, msg: str, msg_type: str) -> None:
    lord = create_user(api)
    group_id = create_group(api, lord)
    response = send_group(api, group_id, lord, msg, msg_type=msg_type)
    assert response.status == 400, response.text
    assert response.json["errors"][0]["field"] == "msg"


def test_img_with_a_stored_file_url_is_sent(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    lord = create_user(api)
    group_id = create_group(api, lord)
    url = stored_file(sync_db)
    response = send_group(api, group_id, lord, url, msg_type="img")
    assert response.status == 201, response.text
    assert (response.json["msg"], response.json["msg_type"]) == (url, "img")


# Idempotent retries


def test_a_retry_with_the_same_client_msg_id_returns_the_original(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    lord, member = create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,))
    first = send_group(api, group_id, member, "once", client_msg_id="c-1")
    assert first.status == 201
    again = send_group(api, group_id, member, "once", client_msg_id="c-1")
    assert again.status == 200
    assert again.json == first.json
    assert again.json["client_msg_id"] == "c-1"
    assert sync_db.group_messages.count_documents({}) == 1
    assert len(group_events(sync_db)) == 1
    assert group_events(sync_db)[0]["data"]["message"]["client_msg_id"] == "c-1"


def test_concurrent_retries_store_one_message(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    lord = create_user(api)
    group_id = create_group(api, lord)
    request = (
        "POST",
        f"/api/groups/{group_id}/messages",
        {"json": {"msg": "x", "client_msg_id": "c"}, "headers": lord.headers},
    )
    responses = api.concurrently([request] * 4)
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert sync_db.group_messages.count_documents({}) == 1
    # delivered once: the retries found its first request still delivering it
    assert len(group_events(sync_db)) == 1


def test_the_same_client_msg_id_from_two_senders_is_two_messages(api: Api) -> None:
    lord, member = create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,))
    assert send_group(api, group_id, lord, "a", client_msg_id="same").status == 201
    assert send_group(api, group_id, member, "b", client_msg_id="same").status == 201


def store_undelivered(
    sync_db: Database[dict[str, Any]], group_id: str, sender: TestUser, deliver_by_ms: int
) -> ObjectId:
    """What a first attempt leaves when its process dies right after storing the message (number 1)."""
    sync_db.groups.update_one({"_id": ObjectId(group_id)}, {"$inc": {"last_n": 1}})
    doc = new_message_doc(
        {"group_id": group_id},
        sender.id,
        "lost?",
        n=1,
        client_msg_id="c-9",
        created_at=utc_now(),
        deliver_by_ms=deliver_by_ms,
    )
    sync_db.group_messages.insert_one(doc)
    oid: ObjectId = doc["_id"]
    return oid


def test_a_retry_of_a_message_stored_but_never_published_publishes_it(
    api: Api, sync_db: Database[dict[str, Any]]
) -> None:
    lord, member = create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,))
    oid = store_undelivered(sync_db, group_id, member, deliver_by_ms=int(time.time() * 1000) - 1)
    retry = send_group(api, group_id, member, "lost?", client_msg_id="c-9")
    assert retry.status == 200
    assert retry.json["id"] == str(oid)
    events = group_events(sync_db)
    assert [e["seq"] for e in events] == [retry.json["seq"]]
    assert events[0]["group"] == group_id
    stored = sync_db.group_messages.find_one({"_id": oid})
    assert stored is not None
    assert stored["seq"] == retry.json["seq"]
    group = sync_db.groups.find_one({"_id": ObjectId(group_id)})
    assert group is not None
    assert (group["last_message"]["id"], group["message_n"]) == (str(oid), 1)
    # and a further retry publishes nothing more
    assert send_group(api, group_id, member, "lost?", client_msg_id="c-9").json == retry.json
    assert len(group_events(sync_db)) == 1


def test_a_retry_while_the_first_request_is_still_delivering_leaves_it_to_that_request(
    api: Api, sync_db: Database[dict[str, Any]]
) -> None:
    lord = create_user(api)
    group_id = create_group(api, lord)
    oid = store_undelivered(sync_db, group_id, lord, deliver_by_ms=int(time.time() * 1000) + 60_000)
    retry = send_group(api, group_id, lord, "lost?", client_msg_id="c-9")
    assert retry.status == 200
    assert (retry.json["id"], retry.json["seq"]) == (str(oid), None)
    assert group_events(sync_db) == []


@pytest.mark.parametrize("change", [{"msg": "other text"}, {"msg_type": "img"}, {"group": "other"}])
def test_a_client_msg_id_reused_for_another_message_is_422(
    api: Api, change: dict[str, str], sync_db: Database[dict[str, Any]]
) -> None:
    lord = create_user(api)
    group_id, other_group = create_group(api, lord), create_group(api, lord)
    assert send_group(api, group_id, lord, "/api/files/x", client_msg_id="c").status == 201
    target = other_group if change.pop("group", None) else group_id
    if change.get("msg_type") == "img":
        change["msg"] = stored_file(sync_db)
    fields = {"msg": "/api/files/x", "client_msg_id": "c", **change}
    response = api.post(f"/api/groups/{target}/messages", json=fields, headers=lord.headers)
    assert response.status == 422, response.text
    assert "client_msg_id" in response.json["message"]


# History


def test_history_is_newest_first_and_pages_by_cursor(api: Api) -> None:
    lord = create_user(api)
    group_id = create_group(api, lord)
    sent = [send_group(api, group_id, lord, f"m{i}").json["id"] for i in range(7)]
    first = history(api, group_id, lord, "?limit=3").json
    assert [m["id"] for m in first] == sent[::-1][:3]
    second = history(api, group_id, lord, f"?limit=3&before={first[-1]['id']}").json
    assert [m["id"] for m in second] == sent[::-1][3:6]
    third = history(api, group_id, lord, f"?limit=3&before={second[-1]['id'].upper()}").json
    assert [m["id"] for m in third] == sent[:1]
    assert history(api, group_id, lord, f"?before={sent[0]}").json == []
    assert [m["id"] for m in history(api, group_id, lord).json] == sent[::-1]


def test_history_shows_only_this_groups_messages(api: Api) -> None:
    lord = create_user(api)
    group_id, other = create_group(api, lord), create_group(api, lord)
    mine = send_group(api, group_id, lord, "here").json["id"]
    send_group(api, other, lord, "there")
    assert [m["id"] for m in history(api, group_id, lord).json] == [mine]


def test_history_is_for_members_only(api: Api) -> None:
    lord, stranger = create_user(api), create_user(api)
    group_id = create_group(api, lord)
    send_group(api, group_id, lord)
    assert history(api, group_id, stranger).status == 403
    assert history(api, UNKNOWN_ID, stranger).status == 404
    assert history(api, "nope", stranger).status == 404


@pytest.mark.parametrize("query", ["?limit=0", "?limit=201", "?limit=x", "?before=nope", "?before=123"])
def test_history_with_a_bad_cursor_is_400(api: Api, query: str) -> None:
    lord = create_user(api)
    group_id = create_group(api, lord)
    assert history(api, group_id, lord, query).status == 400


def test_history_is_served_by_the_group_number_index(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    """The app created the indexes when it started (the `api` fixture starts it)."""
    group_id = "0123456789abcdef01234567"
    for before_n in (None, 7):
        query = group_messages.page_filter(group_id, before_n)
        plan = json.dumps(sync_db.group_messages.find(query).sort("n", -1).limit(50).explain(), default=str)
        # nx-27017 answers with SQLite's plan (naming its index after the fields), MongoDB with its own
        assert "idx_group_messages_group_id_n" in plan or ("IXSCAN" in plan and "group_id_1_n_1" in plan), plan
    # The unread count reads the same index, from the member's read position on.
    plan = json.dumps(
        sync_db.group_messages.find(group_messages.unread_filter(group_id, 3, "x")).explain(), default=str
    )
    assert "idx_group_messages_group_id_n" in plan or ("IXSCAN" in plan and "group_id_1_n_1" in plan), plan


# Store round trips


@pytest.fixture
def counted(other_app: OtherApp, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Api, CommandCounter]]:
    """An app whose store client reports its commands to a counter."""
    counter = CommandCounter()
    monkeypatch.setitem(store.CLIENT_OPTIONS, "event_listeners", [counter])
    with other_app() as client:
        yield Api(client), counter


def trips(
    counter: CommandCounter, api: Api, method: str, path: str, expect: int, user: TestUser, **kw: Any
) -> RoundTrips:
    counter.commands.clear()
    counter.recording = True
    try:
        response = api.request(method, path, headers=user.headers, **kw)
    finally:
        counter.recording = False
    assert response.status == expect, response.text
    return RoundTrips(tuple(counter.commands))


# Data commands per route, the token's user included (docs/api.md, "Groups"). Lookups that do not depend
# on each other go out together (asyncio.gather), so these are commands, not sequential waits.
# Issue 11 (a deletion that is final): adding a member and sending a message read the group again
# after writing (+1 each), and deleting a group writes its tombstone, announces it (`group_deleted`:
# the members, then the event's seq and insert) and redacts its events (+3, 7 -> 10).
EXPECTED = {
    # Issue 14: no route reads the token's user any more (a per-process cache of token versions,
    # docs/reliability.md, "Token revocation"): one command fewer each.
    # Two more each for the routes that change a membership since issue 12: the member's `group_joined` or
    # `group_left` event (a number from its partition's counter, the insert), which keeps every process's
    # and every resume's view of who receives the group's events in order (docs/reliability.md).
    "POST /api/groups": 4,
    "GET /api/groups": 3,
    "GET /api/groups/<id>": 2,
    "PUT /api/groups/<id>": 3,
    "GET /api/groups/<id>/members": 5,
    # Issue 13: whether the user blocks the adder, read beside the user and the friendship (one more, no wait).
    "POST /api/groups/<id>/members": 9,
    "PUT /api/groups/<id>/members/<user_id>": 3,
    "DELETE /api/groups/<id>/members/<user_id>": 5,
    # One more each since issue 11: the message's number, taken from the group's counter; and a new message
    # reads its group again once published (a deletion racing it undoes it: docs/reliability.md). Issue 12
    # reads the sender's membership instead of the member list, and numbers the event from a counter instead
    # of reading the newest number: the same count, whatever the group's size.
    # Issue 13: one more, the message's search postings (one insert_many, whatever the number of terms; none for a
    # text with no term of 2 characters or more).
    "POST /api/groups/<id>/messages": 10,
    "POST /api/groups/<id>/messages (retry)": 5,
    "GET /api/groups/<id>/messages": 3,
    # Issue 13: group + membership (together), the message, the compare-and-set, then for a recall or an
    # edit the group's summary, the event (its number, the insert) and its marker; for a reaction the event. An
    # edit also replaces its search postings (two), a recall removes them and its pin, if any (two).
    "PUT /api/groups/<id>/messages/<message_id>/reactions/<emoji>": 6,
    "PATCH /api/groups/<id>/messages/<message_id>": 10,
    "DELETE /api/groups/<id>/messages/<message_id>": 10,
    # One fewer since issue 12: the `group_deleted` event names the group, so the member list is not read.
    # Two more since issue 13: the purge deletes the group's pins and its search postings.
    "DELETE /api/groups/<id>": 10,
}


def test_every_group_route_takes_its_store_round_trips(
    counted: tuple[Api, CommandCounter], sync_db: Database[dict[str, Any]]
) -> None:
    api, counter = counted
    lord, friend, other = create_user(api), create_user(api), create_user(api)
    make_friends(api, lord, friend)
    make_friends(api, lord, other)
    measured: dict[str, RoundTrips] = {}

    def call(route: str, path: str, expect: int, **kw: Any) -> RoundTrips:
        measured[route] = trips(counter, api, route.split(" ")[0].lower(), path, expect, lord, **kw)
        return measured[route]

    call("POST /api/groups", "/api/groups", 201, json={"group_name": "g"})
    group_id = api.get("/api/groups", headers=lord.headers).json[0]["id"]
    base = f"/api/groups/{group_id}"
    call("GET /api/groups", "/api/groups", 200)
    call("GET /api/groups/<id>", base, 200)
    call("PUT /api/groups/<id>", base, 204, json={"group_desc": "d"})
    call("POST /api/groups/<id>/members", f"{base}/members", 201, json={"user_id": friend.id})
    call("GET /api/groups/<id>/members", f"{base}/members", 200)
    call("PUT /api/groups/<id>/members/<user_id>", f"{base}/members/{friend.id}", 204, json={"identity": "admin"})
    call("POST /api/groups/<id>/messages", f"{base}/messages", 201, json={"msg": "hi", "client_msg_id": "r"})
    call("POST /api/groups/<id>/messages (retry)", f"{base}/messages", 200, json={"msg": "hi", "client_msg_id": "r"})
    call("GET /api/groups/<id>/messages", f"{base}/messages", 200)
    message = f"{base}/messages/" + api.get(f"{base}/messages", headers=lord.headers).json[0]["id"]
    call("PUT /api/groups/<id>/messages/<message_id>/reactions/<emoji>", f"{message}/reactions/%F0%9F%91%8D", 204)
    call("PATCH /api/groups/<id>/messages/<message_id>", message, 200, json={"msg": "m2"})
    call("DELETE /api/groups/<id>/messages/<message_id>", message, 204)
    assert add_member(api, group_id, lord, other).status == 201
    call("DELETE /api/groups/<id>/members/<user_id>", f"{base}/members/{other.id}", 204)
    call("DELETE /api/groups/<id>", base, 204)
    details = "\n".join(f"{route}: {trips.data} = {trips}" for route, trips in measured.items())
    print(details)
    assert {route: t.data for route, t in measured.items()} == EXPECTED, details


def test_a_group_message_costs_the_same_whatever_the_number_of_members(
    counted: tuple[Api, CommandCounter], sync_db: Database[dict[str, Any]]
) -> None:
    api, counter = counted
    lord = create_user(api)
    group_id = create_group(api, lord)
    costs = []
    for added in (2, 10_000 - 3):  # 3 members, then 10,000
        # Memberships written straight to the store: registering 10,000 users over HTTP would only slow the test.
        now = utc_now()
        members = [new_member_doc(group_id, str(ObjectId()), "user", now) for _ in range(added)]
        sync_db.group_members.insert_many(members)
        sent = trips(
            counter, api, "post", f"/api/groups/{group_id}/messages", 201, lord, json={"msg": f"members {added}"}
        )
        costs.append(sent.commands)
    assert sync_db.group_members.count_documents({"group_id": group_id}) == 10_000
    assert costs[0] == costs[1], costs
    writes = [(name, target) for name, target in costs[1] if name in {"insert", "update", "findAndModify", "delete"}]
    # The group's counter, the message, its search postings (issue 13), the event's number and the event (one
    # document), the message's seq, the group's summary: seven writes for 3 members and for 10,000.
    assert writes == [
        ("findAndModify", "groups"),
        ("insert", "group_messages"),
        ("insert", "message_terms"),
        ("findAndModify", "event_counters"),
        ("insert", "events"),
        ("update", "group_messages"),
        ("update", "groups"),
    ]
    assert group_events(sync_db)[-1]["to"] == [], "the event names the group, not its 10,000 members"
