"""Mentions in group messages over real HTTP and WebSocket: who may be named (members, `all` by the lord and admins),
what the message shows, the `mentioned` flag of the `group_message` frame live and on resume, the conversation list's
`mentioned` until the group is read, and what mentions cost in store commands."""

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
from chat_api.common.clock import utc_now
from chat_api.groups.models import new_member_doc
from chat_api.groups.schemas import MAX_MENTIONS
from chat_api.store import client as store
from tests.conftest import OtherApp
from tests.factories import TestUser, add_member, create_group, create_user, make_friends, send_group
from tests.helpers import Api
from tests.realtime_helpers import frames_until, fresh_hub, next_frame, no_frame, open_socket, run, ws_url
from tests.test_group_messages import trips
from tests.test_groups import UNKNOWN_ID

Db = Database[dict[str, Any]]


def conversation(api: Api, user: TestUser, group_id: str) -> dict[str, Any]:
    """The user's conversation list entry for the group."""
    listed = api.get("/api/conversations", headers=user.headers)
    assert listed.status == 200, listed.text
    entry: dict[str, Any] = next(c for c in listed.json if c["type"] == "group" and c["id"] == group_id)
    return entry


def mentioned(api: Api, user: TestUser, group_id: str) -> bool:
    flag: bool = conversation(api, user, group_id)["mentioned"]
    return flag


def mark_read(api: Api, user: TestUser, group_id: str) -> None:
    assert api.put(f"/api/conversations/group/{group_id}/read", headers=user.headers).status == 204


@pytest.fixture
def trio(api: Api) -> tuple[TestUser, TestUser, TestUser, str]:
    """A lord and two plain members of one group."""
    lord, a, b = create_user(api), create_user(api), create_user(api)
    return lord, a, b, create_group(api, lord, members=(a, b))


# What a message may mention


def test_a_message_names_members_once_each_in_the_order_named(
    api: Api, sync_db: Db, trio: tuple[TestUser, TestUser, TestUser, str]
) -> None:
    lord, a, b, group_id = trio
    sent = send_group(api, group_id, a, "hey", mentions=[b.id, lord.id.upper(), b.id])
    assert sent.status == 201, sent.text
    assert sent.json["mentions"] == [b.id, lord.id]
    assert api.get(f"/api/groups/{group_id}/messages", headers=b.headers).json[0]["mentions"] == [b.id, lord.id]
    stored = sync_db.group_messages.find_one({"_id": ObjectId(sent.json["id"])})
    assert stored is not None
    assert stored["mentions"] == [b.id, lord.id]
    event = sync_db.events.find_one({"type": "group_message"})
    assert event is not None
    assert event["data"]["message"]["mentions"] == [b.id, lord.id]


def test_a_message_without_mentions_shows_an_empty_list(
    api: Api, sync_db: Db, trio: tuple[TestUser, TestUser, TestUser, str]
) -> None:
    lord, _, _, group_id = trio
    bodies: list[dict[str, Any]] = [{}, {"mentions": []}, {"mentions": None}]
    for body in bodies:
        sent = send_group(api, group_id, lord, "plain", **body)
        assert sent.status == 201, sent.text
        assert sent.json["mentions"] == []
    assert sync_db.group_messages.count_documents({"mentions": {"$exists": True}}) == 0


def test_naming_yourself_calls_nobody(api: Api, trio: tuple[TestUser, TestUser, TestUser, str]) -> None:
    _, a, _, group_id = trio
    sent = send_group(api, group_id, a, "me", mentions=[a.id])
    assert sent.status == 201, sent.text
    assert sent.json["mentions"] == []
    assert not mentioned(api, a, group_id)


def test_mentioning_someone_who_is_not_a_member_is_400(
    api: Api, sync_db: Db, trio: tuple[TestUser, TestUser, TestUser, str]
) -> None:
    lord, a, _, group_id = trio
    stranger = create_user(api)
    make_friends(api, lord, stranger)  # a friend of the lord, but not in the group
    for mentions in ([stranger.id], [a.id, UNKNOWN_ID]):
        response = send_group(api, group_id, lord, "hi", mentions=mentions)
        assert response.status == 400, response.text
        assert response.json["errors"][0]["field"] == "mentions"
        assert mentions[-1] in response.json["message"]
    assert sync_db.group_messages.count_documents({}) == 0
    group = sync_db.groups.find_one({"_id": ObjectId(group_id)})
    assert group is not None
    assert group["last_n"] == 0, "a refused send takes no number"


def test_a_former_member_cannot_be_mentioned(api: Api, trio: tuple[TestUser, TestUser, TestUser, str]) -> None:
    _, a, b, group_id = trio
    assert api.delete(f"/api/groups/{group_id}/members/{b.id}", headers=b.headers).status == 204
    assert send_group(api, group_id, a, "b?", mentions=[b.id]).status == 400


@pytest.mark.parametrize(
    "mentions",
    [
        "all",
        [5],
        ["nope"],
        ["ALL"],
        ["all", "all"],
        ["all", UNKNOWN_ID],
        [UNKNOWN_ID + "0"],
        [str(ObjectId()) for _ in range(MAX_MENTIONS + 1)],
        {"all": True},
    ],
)
def test_malformed_mentions_are_400(
    api: Api, sync_db: Db, mentions: Any, trio: tuple[TestUser, TestUser, TestUser, str]
) -> None:
    lord, _, _, group_id = trio
    response = send_group(api, group_id, lord, "hi", mentions=mentions)
    assert response.status == 400, response.text
    assert response.json["errors"][0]["field"].startswith("mentions"), response.json
    # Refused by the schema, before any member is looked up (a 101st id is a 400 for its number, not its owner).
    assert response.json["errors"][0].get("type") != "not_a_member"
    assert sync_db.group_messages.count_documents({}) == 0


def test_up_to_the_maximum_of_mentions_is_accepted(api: Api, sync_db: Db) -> None:
    lord = create_user(api)
    group_id = create_group(api, lord)
    others = [str(ObjectId()) for _ in range(MAX_MENTIONS)]
    sync_db.group_members.insert_many([new_member_doc(group_id, user_id, "user", utc_now()) for user_id in others])
    sent = send_group(api, group_id, lord, "everyone by name", mentions=others)
    assert sent.status == 201, sent.text
    assert sent.json["mentions"] == others
    assert sync_db.group_members.count_documents({"group_id": group_id, "mention_n": 1}) == MAX_MENTIONS


def test_only_the_lord_and_admins_may_mention_all(api: Api, sync_db: Db) -> None:
    lord, admin, member = create_user(api), create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,), admins=(admin,))
    refused = send_group(api, group_id, member, "everyone!", mentions=["all"])
    assert refused.status == 403, refused.text
    assert refused.json["message"] == "Only the lord or an admin may mention everyone"
    assert sync_db.group_messages.count_documents({}) == 0
    for sender in (admin, lord):
        sent = send_group(api, group_id, sender, "everyone!", mentions=["all"])
        assert sent.status == 201, sent.text
        assert sent.json["mentions"] == ["all"]


def test_a_non_member_mentioning_is_403_and_an_unknown_group_404(
    api: Api, trio: tuple[TestUser, TestUser, TestUser, str]
) -> None:
    lord, a, _, group_id = trio
    stranger = create_user(api)
    assert send_group(api, group_id, stranger, "x", mentions=[a.id]).status == 403
    assert send_group(api, group_id, stranger, "x", mentions=["all"]).status == 403
    assert send_group(api, UNKNOWN_ID, lord, "x", mentions=[a.id]).status == 404


def test_a_retry_answers_the_original_and_mentions_once(
    api: Api, sync_db: Db, trio: tuple[TestUser, TestUser, TestUser, str]
) -> None:
    lord, a, b, group_id = trio
    first = send_group(api, group_id, lord, "once", mentions=[a.id], client_msg_id="m-1")
    again = send_group(api, group_id, lord, "once", mentions=[a.id, b.id], client_msg_id="m-1")
    assert (first.status, again.status) == (201, 200)
    assert again.json == first.json
    assert again.json["mentions"] == [a.id]
    assert mentioned(api, a, group_id)
    assert not mentioned(api, b, group_id), "the retry's other mentions are not the message's"


# The frame: live and on resume


@pytest.mark.usefixtures(fresh_hub.__name__)
def test_the_mentioned_member_is_told_live_and_on_resume(api: Api) -> None:
    lord, a, b = create_user(api), create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(a, b))

    async def scenario() -> dict[str, list[dict[str, Any]]]:
        sockets = {user.id: await open_socket(ws_url(api), user) for user in (lord, a, b)}
        async with httpx.AsyncClient(base_url=f"http://{api.client.host}:{api.client.port}") as http:
            url = f"/api/groups/{group_id}/messages"
            named = await http.post(url, json={"msg": "a, look", "mentions": [a.id]}, headers=b.headers)
            assert named.status_code == 201
            everyone = await http.post(url, json={"msg": "all, look", "mentions": ["all"]}, headers=lord.headers)
            assert everyone.status_code == 201
            plain = await http.post(url, json={"msg": "nothing"}, headers=a.headers)
            assert plain.status_code == 201
        seen: dict[str, list[dict[str, Any]]] = {}
        for user in (lord, a, b):
            ws, ready = sockets[user.id]
            live = [await next_frame(ws) for _ in range(3)]
            await no_frame(ws, 0.1)
            await ws.close()
            resumed, _ = await open_socket(ws_url(api), user, last_seq=ready["seq"])
            replayed = await frames_until(resumed, lambda frames: len(frames) == 3)
            await no_frame(resumed, 0.1)
            await resumed.close()
            assert [f["message"]["msg"] for f in replayed] == [f["message"]["msg"] for f in live]
            assert [f.get("mentioned", False) for f in replayed] == [f.get("mentioned", False) for f in live]
            seen[user.id] = live
        return seen

    seen = run(api, scenario())
    flags = {user_id: [f.get("mentioned", False) for f in frames] for user_id, frames in seen.items()}
    assert flags[a.id] == [True, True, False], "named, then everyone, then nothing"
    assert flags[b.id] == [False, True, False], "not named (b wrote it), then everyone"
    # The lord's own `@all` (the second) is left to the per-viewer frame (events.service.frame).
    assert flags[lord.id][::2] == [False, False]
    for frames in seen.values():
        assert [f["message"]["mentions"] for f in frames] == [[a.id], ["all"], []]


# The conversation list


def test_the_conversation_shows_mentioned_until_the_member_reads_it(
    api: Api, trio: tuple[TestUser, TestUser, TestUser, str]
) -> None:
    lord, a, b, group_id = trio
    assert not mentioned(api, a, group_id)
    assert send_group(api, group_id, lord, "a!", mentions=[a.id]).status == 201
    assert (mentioned(api, a, group_id), mentioned(api, b, group_id)) == (True, False)
    # Later messages that call nobody do not clear it; reading does.
    assert send_group(api, group_id, b, "chatter").status == 201
    assert mentioned(api, a, group_id)
    mark_read(api, a, group_id)
    assert not mentioned(api, a, group_id)
    # A new mention after reading shows again.
    assert send_group(api, group_id, b, "a again", mentions=[a.id]).status == 201
    assert mentioned(api, a, group_id)


def test_everyone_is_mentioned_by_all_but_its_sender(api: Api) -> None:
    lord, admin, a, b = create_user(api), create_user(api), create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(a, b), admins=(admin,))
    assert send_group(api, group_id, admin, "meeting", mentions=["all"]).status == 201
    assert {u.username: mentioned(api, u, group_id) for u in (lord, admin, a, b)} == {
        lord.username: True,
        admin.username: False,
        a.username: True,
        b.username: True,
    }
    mark_read(api, b, group_id)
    assert not mentioned(api, b, group_id)
    assert mentioned(api, a, group_id)


def test_calling_everyone_yourself_clears_your_own_flag(api: Api) -> None:
    """Documented (docs/decisions.md#mentions): your own `@all` counts as having seen the group's calls up to it."""
    lord, admin = create_user(api), create_user(api)
    group_id = create_group(api, lord, admins=(admin,))
    assert send_group(api, group_id, lord, "first call", mentions=["all"]).status == 201
    assert mentioned(api, admin, group_id)
    assert send_group(api, group_id, admin, "second call", mentions=["all"]).status == 201
    assert not mentioned(api, admin, group_id)
    assert mentioned(api, lord, group_id)
    assert send_group(api, group_id, lord, "admin!", mentions=[admin.id]).status == 201
    assert mentioned(api, admin, group_id)


def test_a_member_who_joins_after_a_call_to_all_is_not_mentioned(api: Api) -> None:
    lord, late = create_user(api), create_user(api)
    group_id = create_group(api, lord)
    assert send_group(api, group_id, lord, "before you", mentions=["all"]).status == 201
    make_friends(api, lord, late)
    assert add_member(api, group_id, lord, late).status == 201
    assert not mentioned(api, late, group_id)


def test_direct_conversations_are_never_mentioned(api: Api) -> None:
    a, b = create_user(api), create_user(api)
    make_friends(api, a, b)
    assert api.post("/api/user-message", json={"to_id": b.id, "msg": "hi"}, headers=a.headers).status == 201
    entries = api.get("/api/conversations", headers=b.headers).json
    assert [(c["type"], c["mentioned"]) for c in entries] == [("user", False)]


CALLS = st.sampled_from(["none", "a", "b", "ab", "all"])
STEP = st.one_of(
    st.tuples(st.just("send"), st.sampled_from(["lord", "a", "b"]), CALLS),
    st.tuples(st.just("read"), st.sampled_from(["lord", "a", "b"]), st.just("")),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=1, max_size=8))
def test_mentioned_means_a_call_after_my_read_position(api: Api, steps: list[tuple[str, str, str]]) -> None:
    """Whatever the sends, mentions and reads: a member's conversation shows `mentioned` exactly when a message after
    their read position names them or calls everyone (not their own), and they have not called everyone since."""
    lord, a, b = create_user(api), create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(a, b))
    users = {"lord": lord, "a": a, "b": b}
    messages: list[tuple[str, set[str], bool]] = []  # (sender, named, calls everyone)
    read_upto = dict.fromkeys(users, 0)
    for kind, who, calls in steps:
        user = users[who]
        if kind == "read":
            mark_read(api, user, group_id)
            read_upto[who] = len(messages)
            continue
        if calls == "all" and who != "lord":
            calls = "none"  # only the lord may call everyone here; refusals are tested above
        named = {name for name in ("a", "b") if calls != "all" and name in calls} - {who}
        body: dict[str, Any] = {"mentions": ["all"]} if calls == "all" else {"mentions": [users[n].id for n in named]}
        assert send_group(api, group_id, user, "m", **body).status == 201
        messages.append((who, named, calls == "all"))
    for name, user in users.items():
        own_calls = [n for n, (sender, _, everyone) in enumerate(messages, 1) if everyone and sender == name]
        seen = max([read_upto[name], *own_calls])
        expected = any(
            n > seen and sender != name and (everyone or name in named)
            for n, (sender, named, everyone) in enumerate(messages, 1)
        )
        assert mentioned(api, user, group_id) is expected, (name, messages, read_upto)


# Store commands


@pytest.fixture
def counted(other_app: OtherApp, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Api, CommandCounter]]:
    counter = CommandCounter()
    monkeypatch.setitem(store.CLIENT_OPTIONS, "event_listeners", [counter])
    with other_app() as client:
        yield Api(client), counter


def test_mentions_cost_one_more_command_and_only_when_there_are_some(
    counted: tuple[Api, CommandCounter], sync_db: Db
) -> None:
    api, counter = counted
    lord, a, b = create_user(api), create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(a, b))
    path = f"/api/groups/{group_id}/messages"
    plain = trips(counter, api, "post", path, 201, lord, json={"msg": "m"})
    named = trips(counter, api, "post", path, 201, lord, json={"msg": "m", "mentions": [a.id, b.id]})
    everyone = trips(counter, api, "post", path, 201, lord, json={"msg": "m", "mentions": ["all"]})
    assert (plain.data, named.data, everyone.data) == (9, 10, 10), (plain, named, everyone)
    # The named members' memberships are read with the sender's (one find), written in one update_many.
    assert [c for c in named.commands if c[1] == "group_members"] == [
        ("find", "group_members"),
        ("update", "group_members"),
    ]
    # `all_mention_n` goes with the group's summary; the sender's own `mentions_seen_n` is the one more write.
    assert [c for c in everyone.commands if c[1] == "group_members"] == [
        ("find", "group_members"),
        ("update", "group_members"),
    ]
    assert [c for c in everyone.commands if c == ("update", "groups")] == [("update", "groups")]
