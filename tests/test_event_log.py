"""The event log (issue 12): numbers from a counter per partition, holes waited for then passed, group
events naming the group, several partitions served together, and resume that never passes a hole."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import httpx
import pytest
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import AsyncMongoClient
from pymongo.database import Database

from bench.round_trips import CommandCounter
from chat_api.common.clock import utc_now
from chat_api.events import service as events
from chat_api.events.models import Event, new_event_doc, partition_of
from chat_api.groups.models import new_member_doc
from chat_api.http.types import ChatApp
from chat_api.realtime.hub import Hub
from chat_api.store import client as store
from tests.conftest import OtherApp
from tests.factories import TestUser, create_group, create_user, make_friends
from tests.helpers import Api
from tests.realtime_helpers import frames_until, fresh_hub, message_data, next_frame, no_frame, open_socket, run, ws_url
from tests.test_group_messages import trips

pytestmark = pytest.mark.usefixtures(fresh_hub.__name__)


async def store_late(partition: int, seq: int, to: TestUser, data: dict[str, Any]) -> None:
    """The insert of a publisher that took its number earlier and commits only now."""
    doc = new_event_doc(partition, seq, "message", data, to=[to.id], transient=False, now=utc_now())
    await Event.get_pymongo_collection().insert_one(doc)


def test_concurrent_publishers_take_distinct_numbers_without_a_single_retry(api: Api) -> None:
    """16 senders to disjoint pairs at once: every number once, none skipped, and no duplicate-key retry (the
    counter hands them out; the old newest+1 scheme retried whenever two read the same newest number)."""
    users = [create_user(api, login=False) for _ in range(32)]

    async def scenario() -> list[int]:
        retries = events.config.retries

        async def sender(a: TestUser, b: TestUser) -> list[int]:
            return [await events.publish("message", [a.id, b.id], message_data(a, b, str(n))) for n in range(10)]

        numbers = await asyncio.gather(*(sender(users[i], users[i + 1]) for i in range(0, 32, 2)))
        assert events.config.retries == retries
        return sorted(n for batch in numbers for n in batch)

    assert run(api, scenario()) == list(range(1, 161))


@pytest.fixture
def long_gap_wait(app: ChatApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hole waited for far longer than the suite's 1 s: the test's own steps, however slow the machine, stay
    within it (the hole "may still fill" for all of them)."""
    hub: Hub = app.ctx.hub
    monkeypatch.setattr(hub, "settings", replace(hub.settings, event_gap_wait=60.0))


@pytest.mark.usefixtures(long_gap_wait.__name__)
def test_an_event_committed_out_of_order_waits_for_the_one_before_it(api: Api) -> None:
    alice, bob = create_user(api), create_user(api)

    async def scenario() -> None:
        ws, _ = await open_socket(ws_url(api), bob)
        early_number = await events.take_number(0)  # a publisher numbered, its insert still on the way
        later = await events.publish("message", [bob.id], message_data(alice, bob, "second"))
        await no_frame(ws, 0.4)  # not delivered past the hole
        await store_late(0, early_number, bob, message_data(alice, bob, "first"))
        frames = [await next_frame(ws), await next_frame(ws)]
        assert [(f["seq"], f["message"]["msg"]) for f in frames] == [(early_number, "first"), (later, "second")]
        await ws.close()

    run(api, scenario())


def test_a_number_never_stored_is_passed_after_the_gap_wait(api: Api, app: ChatApp) -> None:
    """A publisher that died between its number and its insert: the next event waits EVENT_GAP_WAIT, then goes."""
    alice, bob = create_user(api), create_user(api)
    hub: Hub = app.ctx.hub
    wait = app.ctx.settings.event_gap_wait

    async def scenario() -> float:
        ws, _ = await open_socket(ws_url(api), bob)
        passed = hub.holes_passed
        await events.take_number(0)
        started = time.monotonic()
        later = await events.publish("message", [bob.id], message_data(alice, bob, "after the hole"))
        frame = await next_frame(ws, timeout=wait + 5)
        assert frame["seq"] == later
        assert hub.holes_passed == passed + 1
        await ws.close()
        return time.monotonic() - started

    assert run(api, scenario()) >= wait


@pytest.mark.usefixtures(long_gap_wait.__name__)
def test_a_resume_stops_below_a_hole_that_may_still_fill(api: Api) -> None:
    """The backlog is read up to what the process has dispatched: the event above the hole comes once the hole
    fills, in order, never before it."""
    alice, bob = create_user(api), create_user(api)

    async def scenario() -> None:
        start = await events.newest_seq(0)
        first = await events.publish("message", [bob.id], message_data(alice, bob, "one"))
        hole = await events.take_number(0)
        third = await events.publish("message", [bob.id], message_data(alice, bob, "three"))
        ws, ready = await open_socket(ws_url(api), bob, last_seq=start)
        assert ready["seq"] == first, "settled below the hole"
        assert (await next_frame(ws))["seq"] == first
        await no_frame(ws, 0.3)
        await store_late(0, hole, bob, message_data(alice, bob, "two"))
        frames = [await next_frame(ws), await next_frame(ws)]
        assert [f["seq"] for f in frames] == [hole, third]
        await ws.close()

    run(api, scenario())


def test_a_group_message_reaches_every_connected_member_of_a_10000_member_group(
    api: Api, sync_db: Database[dict[str, Any]]
) -> None:
    """One event naming the group (its command count is held, with 3 members and 10,000, in
    test_group_messages.py); each process delivers it to the members whose sockets it holds."""
    lord = create_user(api)
    connected = [create_user(api) for _ in range(12)]
    group_id = create_group(api, lord)
    now = utc_now()
    members = [new_member_doc(group_id, str(ObjectId()), "user", now) for _ in range(10_000 - 13)]
    members += [new_member_doc(group_id, user.id, "user", now) for user in connected]

    sync_db.group_members.insert_many(members)

    async def scenario() -> list[dict[str, Any]]:
        sockets = [(await open_socket(ws_url(api), user))[0] for user in connected]
        async with httpx.AsyncClient(base_url=f"http://{api.client.host}:{api.client.port}") as http:
            sent = await http.post(f"/api/groups/{group_id}/messages", json={"msg": "to all"}, headers=lord.headers)
            assert sent.status_code == 201
        frames = [await next_frame(ws) for ws in sockets]
        for ws in sockets:
            await ws.close()
        return frames

    frames = run(api, scenario())
    assert [(f["type"], f["message"]["msg"]) for f in frames] == [("group_message", "to all")] * 12


# Several partitions (EVENT_PARTITIONS=4): a second app on the same store.


def in_partitions(api: Api, count: int, partitions: int) -> list[TestUser]:
    """Users whose home partitions cover `count` different ones."""
    found: dict[int, TestUser] = {}
    while len(found) < count:
        user = create_user(api)
        found.setdefault(partition_of(user.id, partitions), user)
    return list(found.values())


def test_with_four_partitions_each_user_resumes_in_their_own_numbering(other_app: OtherApp) -> None:
    with other_app(event_partitions=4) as client:
        api = Api(client)
        alice, bob = in_partitions(api, 2, 4)
        group_id = create_group(api, alice, members=(bob,))

        async def scenario() -> None:
            alice_ws, alice_ready = await open_socket(ws_url(api), alice)
            bob_ws, bob_ready = await open_socket(ws_url(api), bob)
            async with httpx.AsyncClient(base_url=f"http://{client.host}:{client.port}") as http:
                direct = await http.post(
                    "/api/user-message", json={"to_id": bob.id, "msg": "hi"}, headers=alice.headers
                )
                assert direct.status_code == 201
                grouped = await http.post(f"/api/groups/{group_id}/messages", json={"msg": "all"}, headers=bob.headers)
                assert grouped.status_code == 201
            # Each side numbers in its own partition: the sender's seq is the sender's.
            alice_frames = [await next_frame(alice_ws), await next_frame(alice_ws)]
            bob_frames = [await next_frame(bob_ws), await next_frame(bob_ws)]
            assert [f["type"] for f in alice_frames] == ["message", "group_message"]
            assert [f["type"] for f in bob_frames] == ["message", "group_message"]
            assert direct.json()["message"]["seq"] == alice_frames[0]["seq"] == alice_ready["seq"] + 1
            assert bob_frames[0]["seq"] == bob_ready["seq"] + 1
            assert grouped.json()["seq"] == bob_frames[1]["seq"]
            await bob_ws.close()
            resumed, _ = await open_socket(ws_url(api), bob, last_seq=bob_ready["seq"])
            again = await frames_until(resumed, lambda frames: len(frames) == 2)
            assert again == bob_frames
            await no_frame(resumed)
            for ws in (alice_ws, resumed):
                await ws.close()

        run(api, scenario())


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["send", "join", "leave"]), min_size=1, max_size=12))
def test_a_resume_gives_exactly_the_group_messages_from_while_a_member(api: Api, steps: list[str]) -> None:
    """Whatever the order of joins, leaves and sends, a resume from before them all replays the group's
    messages sent while the user was a member, in order, and the membership events between them."""
    lord, user = create_user(api), create_user(api)
    make_friends(api, lord, user)
    group_id = create_group(api, lord)

    async def scenario() -> None:
        start = await events.newest_seq(events.home_partition(user.id))
        expected: list[tuple[str, str | None]] = []
        member = False
        async with httpx.AsyncClient(base_url=f"http://{api.client.host}:{api.client.port}") as http:
            for n, step in enumerate(steps):
                if step == "send":
                    url = f"/api/groups/{group_id}/messages"
                    assert (await http.post(url, json={"msg": str(n)}, headers=lord.headers)).status_code == 201
                    if member:
                        expected.append(("group_message", str(n)))
                elif step == "join" and not member:
                    added = await http.post(
                        f"/api/groups/{group_id}/members", json={"user_id": user.id}, headers=lord.headers
                    )
                    assert added.status_code == 201
                    member = True
                    expected.append(("group_joined", None))
                elif step == "leave" and member:
                    url = f"/api/groups/{group_id}/members/{user.id}"
                    assert (await http.delete(url, headers=user.headers)).status_code == 204
                    member = False
                    expected.append(("group_left", None))
        ws, _ = await open_socket(ws_url(api), user, last_seq=start)
        frames = await frames_until(ws, lambda frames: len(frames) == len(expected))
        await no_frame(ws, 0.1)
        await ws.close()
        assert [(f["type"], f.get("message", {}).get("msg")) for f in frames] == expected

    run(api, scenario())


def test_delivery_and_resume_read_majority_from_the_primary_whatever_the_uri_says(api: Api, store_uri: str) -> None:
    """A URI asking for secondaries and `local` reads changes nothing for the log's reads (docs/reliability.md)."""

    async def scenario() -> tuple[str | None, str, dict[int, int]]:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            f"{store_uri}?readPreference=secondaryPreferred&readConcernLevel=local", tz_aware=True
        )
        try:
            collection = client[api.client.app.ctx.settings.mongodb_db]["event_counters"]
            assert collection.read_concern.level == "local"
            log_reads = events.reads(collection)
            return log_reads.read_concern.level, log_reads.read_preference.name, await events.counters(collection)
        finally:
            await client.close()

    level, preference, counters = run(api, scenario())
    assert (level, preference) == ("majority", "Primary")
    assert isinstance(counters, dict)  # the real store accepts both


def test_with_eight_partitions_each_partition_costs_one_number(
    other_app: OtherApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A direct message between two partitions takes one number more than within one (9 → 10 commands: with
    the block check and the search postings' insert since issue 13, without the token's user since issue 14); a
    group message takes one number in each of the 8 partitions, sent together, and one insert (10 → 17)."""
    counter = CommandCounter()
    monkeypatch.setitem(store.CLIENT_OPTIONS, "event_listeners", [counter])
    with other_app(event_partitions=8) as client:
        api = Api(client)
        alice, bob = in_partitions(api, 2, 8)
        group_id = create_group(api, alice, members=(bob,))
        direct = trips(counter, api, "post", "/api/user-message", 201, alice, json={"to_id": bob.id, "msg": "hi"})
        grouped = trips(counter, api, "post", f"/api/groups/{group_id}/messages", 201, alice, json={"msg": "all"})
    assert direct.data == 10, direct
    assert [c for c in direct.commands if c[1] in {"event_counters", "events"}] == [
        ("findAndModify", "event_counters"),
        ("findAndModify", "event_counters"),
        ("insert", "events"),
    ]
    assert grouped.data == 17, grouped
    assert grouped.commands.count(("findAndModify", "event_counters")) == 8
    assert grouped.commands.count(("insert", "events")) == 1


def test_each_recipient_sees_an_event_as_their_own(api: Api) -> None:
    """One stored event, personalised per viewer live, on resume and in GET /api/events: the other participant of
    a direct conversation, whether a group message mentions them, and which reactions are theirs."""
    alice, bob, carol = create_user(api), create_user(api), create_user(api)
    group_id = create_group(api, alice, members=[bob, carol])
    reactions = [{"emoji": "👍", "count": 1, "me": False}, {"emoji": "🎉", "count": 2, "me": False}]
    message = {"id": "m1", "msg": "hi", "reactions": reactions, "_reactors": {"👍": [bob.id], "🎉": [alice.id, bob.id]}}

    def seen_by(frame: dict[str, Any]) -> tuple[Any, ...]:
        shown = frame["message"]
        assert "_reactors" not in shown
        return frame["conversation"]["id"], [r["me"] for r in shown["reactions"]], frame.get("mentioned", False)

    async def scenario() -> None:
        start = await events.newest_seq(0)
        sockets = {user.id: (await open_socket(ws_url(api), user))[0] for user in (alice, bob, carol)}
        conversation = events.direct_conversation(alice.id, bob.id)
        await events.publish("message_edited", [alice.id, bob.id], {"message": message, "conversation": conversation})
        mention = {"message": {**message, "mentions": [carol.id]}, "conversation": {"type": "group", "id": group_id}}
        await events.publish_to_group("group_message", group_id, mention)
        live = {
            user_id: [await next_frame(ws), *([] if user_id == carol.id else [await next_frame(ws)])]
            for user_id, ws in sockets.items()
        }
        resumed, _ = await open_socket(ws_url(api), bob, last_seq=start)
        replayed = [await next_frame(resumed), await next_frame(resumed)]
        for ws in [*sockets.values(), resumed]:
            await ws.close()
        alice_sees = [(bob.id, [False, True], False), (group_id, [False, True], False)]
        assert [seen_by(f) for f in live[alice.id]] == alice_sees
        assert [seen_by(f) for f in live[bob.id]] == [(alice.id, [True, True], False), (group_id, [True, True], False)]
        assert [seen_by(f) for f in live[carol.id]] == [(group_id, [False, False], True)]
        assert replayed == live[bob.id]

    run(api, scenario())
    listed = api.get("/api/events?after=0&limit=50", headers=carol.headers).json
    assert [seen_by(frame) for frame in listed if frame["type"] == "group_message"] == [
        (group_id, [False, False], True)
    ]
