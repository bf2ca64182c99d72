"""Pinned group messages over real HTTP and WebSocket: who may pin, unpin and list, idempotent retries, the limit of
50 under concurrency, the order, the `pin` events live and on resume, a recalled message unpinned, the purge of a
deleted group, and the store commands of each route."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo.database import Database

from bench.round_trips import CommandCounter
from chat_api.events.service import PublishFailed
from chat_api.groups import service
from chat_api.groups.models import MAX_PINS
from chat_api.groups.service import unpin_recalled
from chat_api.store import client as store
from tests.conftest import OtherApp
from tests.factories import TestUser, create_group, create_user, insert_group_messages, send_group
from tests.helpers import Api
from tests.realtime_helpers import frames_until, fresh_hub, next_frame, no_frame, open_socket, run, ws_url
from tests.test_group_messages import trips
from tests.test_groups import UNKNOWN_ID

Db = Database[dict[str, Any]]


def pin(api: Api, group_id: str, user: TestUser, message_id: str) -> Any:
    return api.put(f"/api/groups/{group_id}/pins/{message_id}", headers=user.headers)


def unpin(api: Api, group_id: str, user: TestUser, message_id: str) -> Any:
    return api.delete(f"/api/groups/{group_id}/pins/{message_id}", headers=user.headers)


def pinned(api: Api, group_id: str, user: TestUser) -> list[str]:
    listed = api.get(f"/api/groups/{group_id}/pins", headers=user.headers)
    assert listed.status == 200, listed.text
    return [m["id"] for m in listed.json]


def pin_events(sync_db: Db) -> list[tuple[str, bool]]:
    return [(e["data"]["message_id"], e["data"]["pinned"]) for e in sync_db.events.find({"type": "pin"}).sort("seq", 1)]


def message_keys(sync_db: Db, group_id: str, sender: TestUser, count: int) -> list[str]:
    """`count` messages of the group written to the store; their ids, oldest first."""
    insert_group_messages(sync_db, group_id, sender, count)
    return [d["key"] for d in sync_db.group_messages.find({"group_id": group_id}).sort("n", 1)]


@pytest.fixture
def group(api: Api) -> tuple[TestUser, TestUser, TestUser, str]:
    """A lord, an admin and a plain member of one group."""
    lord, admin, member = create_user(api), create_user(api), create_user(api)
    return lord, admin, member, create_group(api, lord, members=(member,), admins=(admin,))


def test_the_lord_and_admins_pin_and_members_list_the_pins(
    api: Api, sync_db: Db, group: tuple[TestUser, TestUser, TestUser, str]
) -> None:
    lord, admin, member, group_id = group
    first = send_group(api, group_id, member, "remember this").json
    second = send_group(api, group_id, member, "and this").json
    assert pin(api, group_id, lord, first["id"]).status == 204
    assert pin(api, group_id, admin, second["id"].upper()).status == 204
    listed = api.get(f"/api/groups/{group_id}/pins", headers=member.headers)
    assert listed.status == 200
    assert [(m["id"], m["msg"], m["pinned_by"]) for m in listed.json] == [
        (second["id"], "and this", admin.id),
        (first["id"], "remember this", lord.id),
    ]
    shown = listed.json[1]
    assert {k: v for k, v in shown.items() if k not in ("pinned_at", "pinned_by")} == {
        k: v for k, v in api.get(f"/api/groups/{group_id}/messages", headers=member.headers).json[1].items()
    }
    assert pin_events(sync_db) == [(first["id"], True), (second["id"], True)]


def test_a_plain_member_may_not_pin_or_unpin(
    api: Api, sync_db: Db, group: tuple[TestUser, TestUser, TestUser, str]
) -> None:
    lord, _, member, group_id = group
    message_id = send_group(api, group_id, member, "mine").json["id"]
    assert pin(api, group_id, member, message_id).status == 403
    assert pin(api, group_id, lord, message_id).status == 204
    refused = unpin(api, group_id, member, message_id)
    assert refused.status == 403
    assert refused.json["message"] == "Only the lord or an admin may unpin messages"
    assert pinned(api, group_id, member) == [message_id]


def test_outsiders_get_403_and_unknown_groups_404(api: Api, group: tuple[TestUser, TestUser, TestUser, str]) -> None:
    lord, _, _, group_id = group
    message_id = send_group(api, group_id, lord, "x").json["id"]
    stranger = create_user(api)
    assert pin(api, group_id, stranger, message_id).status == 403
    assert unpin(api, group_id, stranger, message_id).status == 403
    assert api.get(f"/api/groups/{group_id}/pins", headers=stranger.headers).status == 403
    for path_group in (UNKNOWN_ID, "nope"):
        assert pin(api, path_group, lord, message_id).status == 404
        assert api.get(f"/api/groups/{path_group}/pins", headers=lord.headers).status == 404
    assert api.put(f"/api/groups/{group_id}/pins/{message_id}").status == 401


@pytest.mark.parametrize("which", ["unknown", "malformed", "another group's"])
def test_pinning_what_is_not_a_message_of_the_group_is_404(
    api: Api, sync_db: Db, which: str, group: tuple[TestUser, TestUser, TestUser, str]
) -> None:
    lord, _, _, group_id = group
    other_group = create_group(api, lord)
    message_id = {
        "unknown": UNKNOWN_ID,
        "malformed": "123",
        "another group's": send_group(api, other_group, lord, "elsewhere").json["id"],
    }[which]
    for response in (pin(api, group_id, lord, message_id), unpin(api, group_id, lord, message_id)):
        assert response.status == 404, response.text
        assert response.json["message"]
    assert sync_db.group_pins.count_documents({}) == 0
    assert pin_events(sync_db) == []


def test_pinning_and_unpinning_are_idempotent(
    api: Api, sync_db: Db, group: tuple[TestUser, TestUser, TestUser, str]
) -> None:
    lord, admin, _, group_id = group
    message_id = send_group(api, group_id, lord, "x").json["id"]
    assert [pin(api, group_id, who, message_id).status for who in (lord, admin, lord)] == [204, 204, 204]
    assert sync_db.group_pins.count_documents({}) == 1
    assert pinned(api, group_id, lord) == [message_id]
    assert [unpin(api, group_id, who, message_id).status for who in (admin, lord)] == [204, 204]
    assert pinned(api, group_id, lord) == []
    assert pin_events(sync_db) == [(message_id, True), (message_id, False)], "one event per change, none per retry"


def test_pins_are_listed_most_recently_pinned_first(api: Api, group: tuple[TestUser, TestUser, TestUser, str]) -> None:
    lord, _, _, group_id = group
    ids = [send_group(api, group_id, lord, f"m{i}").json["id"] for i in range(4)]
    for message_id in (ids[2], ids[0], ids[3], ids[1]):
        assert pin(api, group_id, lord, message_id).status == 204
    assert pinned(api, group_id, lord) == [ids[1], ids[3], ids[0], ids[2]]
    # Pinned again after an unpin: it is the most recent pin.
    assert unpin(api, group_id, lord, ids[2]).status == 204
    assert pin(api, group_id, lord, ids[2]).status == 204
    assert pinned(api, group_id, lord) == [ids[2], ids[1], ids[3], ids[0]]


def test_a_51st_pin_is_422_until_one_is_unpinned(
    api: Api, sync_db: Db, group: tuple[TestUser, TestUser, TestUser, str]
) -> None:
    lord, _, _, group_id = group
    keys = message_keys(sync_db, group_id, lord, MAX_PINS + 1)
    for key in keys[:MAX_PINS]:
        assert pin(api, group_id, lord, key).status == 204
    refused = pin(api, group_id, lord, keys[-1])
    assert refused.status == 422
    assert "50" in refused.json["message"]
    # Pinning one already pinned is still fine at the limit.
    assert pin(api, group_id, lord, keys[0]).status == 204
    assert unpin(api, group_id, lord, keys[7]).status == 204
    assert pin(api, group_id, lord, keys[-1]).status == 204
    assert len(pinned(api, group_id, lord)) == MAX_PINS
    assert sorted(d["slot"] for d in sync_db.group_pins.find({"group_id": group_id})) == list(range(MAX_PINS))


def test_concurrent_pins_never_pass_the_limit(
    api: Api, sync_db: Db, group: tuple[TestUser, TestUser, TestUser, str]
) -> None:
    lord, admin, _, group_id = group
    keys = message_keys(sync_db, group_id, lord, MAX_PINS + 3)
    for key in keys[: MAX_PINS - 3]:
        assert pin(api, group_id, lord, key).status == 204
    requests = [
        ("PUT", f"/api/groups/{group_id}/pins/{key}", {"headers": (lord if i % 2 else admin).headers})
        for i, key in enumerate(keys[MAX_PINS - 3 :])
    ]
    statuses = sorted(r.status_code for r in api.concurrently(requests))
    assert statuses == [204, 204, 204, 422, 422, 422], statuses
    assert len(pinned(api, group_id, lord)) == MAX_PINS
    assert len(pin_events(sync_db)) == MAX_PINS, "an event for each pin stored, none for a refused one"


def test_concurrent_pins_of_one_message_store_one_pin(
    api: Api, sync_db: Db, group: tuple[TestUser, TestUser, TestUser, str]
) -> None:
    lord, admin, _, group_id = group
    message_id = send_group(api, group_id, lord, "x").json["id"]
    request = ("PUT", f"/api/groups/{group_id}/pins/{message_id}", {"headers": admin.headers})
    assert [r.status_code for r in api.concurrently([request] * 5)] == [204] * 5
    assert sync_db.group_pins.count_documents({}) == 1
    assert pin_events(sync_db) == [(message_id, True)]


# Recalls and deletions


def test_a_recalled_message_cannot_be_pinned(
    api: Api, sync_db: Db, group: tuple[TestUser, TestUser, TestUser, str]
) -> None:
    lord, _, _, group_id = group
    message_id = send_group(api, group_id, lord, "x").json["id"]
    sync_db.group_messages.update_one({"_id": ObjectId(message_id)}, {"$set": {"recalled": True}})
    refused = pin(api, group_id, lord, message_id)
    assert refused.status == 422
    assert refused.json["message"] == "A recalled message cannot be pinned"
    assert sync_db.group_pins.count_documents({}) == 0


def test_a_recall_unpins_the_message_and_tells_the_members(
    api: Api, sync_db: Db, group: tuple[TestUser, TestUser, TestUser, str]
) -> None:
    lord, _, member, group_id = group
    kept, recalled = (send_group(api, group_id, lord, text).json["id"] for text in ("kept", "recalled"))
    for message_id in (kept, recalled):
        assert pin(api, group_id, lord, message_id).status == 204
    run(api, unpin_recalled(group_id, recalled))
    assert pinned(api, group_id, member) == [kept]
    assert pin_events(sync_db)[-1] == (recalled, False)
    # A recalled message that was not pinned: nothing, no event.
    other = send_group(api, group_id, lord, "never pinned").json["id"]
    before = len(pin_events(sync_db))
    run(api, unpin_recalled(group_id, other))
    assert len(pin_events(sync_db)) == before


def test_deleting_the_group_purges_its_pins(
    api: Api, sync_db: Db, group: tuple[TestUser, TestUser, TestUser, str]
) -> None:
    lord, _, _, group_id = group
    other_group = create_group(api, lord)
    for gid in (group_id, other_group):
        assert pin(api, gid, lord, send_group(api, gid, lord, "x").json["id"]).status == 204
    assert api.delete(f"/api/groups/{group_id}", headers=lord.headers).status == 204
    assert [d["group_id"] for d in sync_db.group_pins.find()] == [other_group]
    assert api.get(f"/api/groups/{group_id}/pins", headers=lord.headers).status == 404
    assert sync_db.events.count_documents({"type": "pin", "data.group_id": group_id}) == 0, "redacted with the group"


# Events


@pytest.mark.usefixtures(fresh_hub.__name__)
def test_members_see_pins_live_and_on_resume(api: Api, group: tuple[TestUser, TestUser, TestUser, str]) -> None:
    lord, _, member, group_id = group
    message_id = send_group(api, group_id, lord, "x").json["id"]

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        ws, ready = await open_socket(ws_url(api), member)
        async with httpx.AsyncClient(base_url=f"http://{api.client.host}:{api.client.port}") as http:
            url = f"/api/groups/{group_id}/pins/{message_id}"
            assert (await http.put(url, headers=lord.headers)).status_code == 204
            assert (await http.put(url, headers=lord.headers)).status_code == 204
            assert (await http.delete(url, headers=lord.headers)).status_code == 204
        live = [await next_frame(ws), await next_frame(ws)]
        await no_frame(ws, 0.2)
        await ws.close()
        resumed, _ = await open_socket(ws_url(api), member, last_seq=ready["seq"])
        replayed = await frames_until(resumed, lambda frames: len(frames) == 2)
        await no_frame(resumed, 0.1)
        await resumed.close()
        return live, replayed

    live, replayed = run(api, scenario())
    assert live == replayed
    assert [{k: v for k, v in f.items() if k != "seq"} for f in live] == [
        {"type": "pin", "group_id": group_id, "message_id": message_id, "pinned": True},
        {"type": "pin", "group_id": group_id, "message_id": message_id, "pinned": False},
    ]


# A property


ACTIONS = st.lists(st.tuples(st.sampled_from(["pin", "unpin"]), st.integers(0, MAX_PINS + 4)), min_size=1, max_size=30)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=ACTIONS)
def test_the_pins_are_the_last_pinned_first_and_never_more_than_50(
    api: Api, sync_db: Db, actions: list[tuple[str, int]]
) -> None:
    """Any sequence of pins and unpins (some already pinned, some not, some past the limit): the list is exactly the
    messages pinned and not unpinned since, most recently pinned first, a pin refused (422) exactly when 50 are."""
    lord = create_user(api)
    group_id = create_group(api, lord)
    keys = message_keys(sync_db, group_id, lord, MAX_PINS + 5)
    # Most of the pool pinned up front, so that the sequence reaches the limit.
    model = list(reversed(keys[: MAX_PINS - 2]))
    for key in keys[: MAX_PINS - 2]:
        assert pin(api, group_id, lord, key).status == 204
    for action, index in actions:
        key = keys[index]
        if action == "pin":
            expected = 204 if key in model or len(model) < MAX_PINS else 422
            assert pin(api, group_id, lord, key).status == expected
            if key not in model and expected == 204:
                model.insert(0, key)
        else:
            assert unpin(api, group_id, lord, key).status == 204
            if key in model:
                model.remove(key)
    assert pinned(api, group_id, lord) == model


# Store commands


@pytest.fixture
def counted(other_app: OtherApp, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Api, CommandCounter]]:
    counter = CommandCounter()
    monkeypatch.setitem(store.CLIENT_OPTIONS, "event_listeners", [counter])
    with other_app() as client:
        yield Api(client), counter


def test_every_pin_route_takes_its_store_commands(counted: tuple[Api, CommandCounter]) -> None:
    api, counter = counted
    lord = create_user(api)
    group_id = create_group(api, lord)
    message_id = send_group(api, group_id, lord, "x").json["id"]
    path = f"/api/groups/{group_id}/pins"
    measured = {
        # (None reads the token's user since issue 14.) The group and the membership, the message and the pins,
        # the pin, the event (a number, the insert), then the group and the message again (a deletion or a recall
        # that raced it).
        "PUT": trips(counter, api, "put", f"{path}/{message_id}", 204, lord).data,
        # Already pinned: the checks and the pins read, nothing written.
        "PUT again": trips(counter, api, "put", f"{path}/{message_id}", 204, lord).data,
        # The group and the membership, the pins, their messages (one `$in`).
        "GET": trips(counter, api, "get", path, 200, lord).data,
        # The group and the membership, the delete, the event.
        "DELETE": trips(counter, api, "delete", f"{path}/{message_id}", 204, lord).data,
        # Not pinned: the delete found nothing, the message is looked up (a 404 otherwise).
        "DELETE again": trips(counter, api, "delete", f"{path}/{message_id}", 204, lord).data,
    }
    assert measured == {"PUT": 9, "PUT again": 4, "GET": 4, "DELETE": 5, "DELETE again": 4}


def test_a_pin_whose_event_cannot_be_stored_is_undone_and_a_retry_pins_it(
    api: Api, sync_db: Db, monkeypatch: pytest.MonkeyPatch, group: tuple[TestUser, TestUser, TestUser, str]
) -> None:
    lord, _, member, group_id = group
    message_id = send_group(api, group_id, lord, "x").json["id"]

    async def failing(*_: Any) -> None:
        raise PublishFailed("the event log is down")

    with monkeypatch.context() as patched:
        patched.setattr(service, "publish_to_group", failing)
        failed = pin(api, group_id, lord, message_id)
    assert failed.status == 500, failed.text
    assert set(failed.json) == {"message"}
    assert pinned(api, group_id, member) == []
    assert pin(api, group_id, lord, message_id).status == 204
    assert pinned(api, group_id, member) == [message_id]
    assert pin_events(sync_db) == [(message_id, True)]
