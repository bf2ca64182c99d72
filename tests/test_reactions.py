"""Reactions to direct and group messages over real HTTP and WebSocket (issue 13): participants only, one emoji,
at most 20 different ones, idempotent, counts and `me` right for every viewer whatever the calls, none lost when
many react at once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo.database import Database

from tests.factories import (
    TestUser,
    create_group,
    create_user,
    direct_message,
    events_of,
    message_url,
    new_friends,
    reaction_url,
    send_group,
)
from tests.helpers import Api, assert_error
from tests.realtime_helpers import fresh_hub, next_frame, open_socket, run, ws_url

Db = Database[dict[str, Any]]
EMOJI_ERROR = "The reaction must be one emoji (one grapheme cluster of at most 32 bytes)"


def shown_in_history(api: Api, viewer: TestUser, other: TestUser, message_id: str) -> dict[str, Any]:
    response = api.get(f"/api/user-message/{viewer.id}/{other.id}", headers=viewer.headers)
    assert response.status == 200, response.text
    return next(m for m in response.json if m["id"] == message_id)


def group_shown(api: Api, group_id: str, viewer: TestUser, message_id: str) -> dict[str, Any]:
    response = api.get(f"/api/groups/{group_id}/messages", headers=viewer.headers)
    assert response.status == 200, response.text
    return next(m for m in response.json if m["id"] == message_id)


def test_a_reaction_shows_with_its_count_and_my_own_me(api: Api) -> None:
    alice, bob = new_friends(api)
    sent = direct_message(api, alice, bob)
    assert api.put(reaction_url(sent["id"], "👍"), headers=bob.headers).status == 204
    assert api.put(reaction_url(sent["id"], "👍"), headers=alice.headers).status == 204
    assert api.put(reaction_url(sent["id"], "😂"), headers=alice.headers).status == 204
    assert shown_in_history(api, bob, alice, sent["id"])["reactions"] == [
        {"emoji": "👍", "count": 2, "me": True},
        {"emoji": "😂", "count": 1, "me": False},
    ]
    assert api.delete(reaction_url(sent["id"], "👍"), headers=bob.headers).status == 204
    assert shown_in_history(api, alice, bob, sent["id"])["reactions"] == [
        {"emoji": "👍", "count": 1, "me": True},
        {"emoji": "😂", "count": 1, "me": True},
    ]


def test_reacting_twice_or_taking_back_nothing_is_204_and_changes_nothing(api: Api) -> None:
    alice, bob = new_friends(api)
    sent = direct_message(api, alice, bob)
    for _ in range(2):
        assert api.put(reaction_url(sent["id"], "❤️"), headers=bob.headers).status == 204
    assert shown_in_history(api, bob, alice, sent["id"])["reactions"] == [{"emoji": "❤️", "count": 1, "me": True}]
    for _ in range(2):
        assert api.delete(reaction_url(sent["id"], "❤️"), headers=bob.headers).status == 204
    assert api.delete(reaction_url(sent["id"], "🙈"), headers=bob.headers).status == 204
    assert shown_in_history(api, bob, alice, sent["id"])["reactions"] == []


def test_the_reaction_event_reaches_the_other_participant(api: Api) -> None:
    alice, bob = new_friends(api)
    sent = direct_message(api, alice, bob)
    assert api.put(reaction_url(sent["id"], "👍🏽"), headers=bob.headers).status == 204
    assert api.delete(reaction_url(sent["id"], "👍🏽"), headers=bob.headers).status == 204
    reactions = [e for e in events_of(api, alice) if e["type"] == "reaction"]
    assert [(e["emoji"], e["user_id"], e["added"], e["message_id"]) for e in reactions] == [
        ("👍🏽", bob.id, True, sent["id"]),
        ("👍🏽", bob.id, False, sent["id"]),
    ]
    assert all(e["conversation"] == {"type": "user", "id": bob.id} for e in reactions)
    assert all(
        e["conversation"] == {"type": "user", "id": alice.id} for e in events_of(api, bob) if e["type"] == "reaction"
    )


@pytest.mark.parametrize(
    "emoji", ["👍", "👍🏽", "👨‍👩‍👧‍👦", "🇨🇳", "1️⃣", "#️⃣", "❤️", "🏳️‍🌈", "©"], ids=lambda e: e.encode().hex()
)
def test_one_emoji_of_any_kind_is_a_reaction(api: Api, emoji: str) -> None:
    alice, bob = new_friends(api)
    sent = direct_message(api, alice, bob)
    assert api.put(reaction_url(sent["id"], emoji), headers=bob.headers).status == 204
    assert shown_in_history(api, bob, alice, sent["id"])["reactions"] == [{"emoji": emoji, "count": 1, "me": True}]


@pytest.mark.parametrize(
    "emoji",
    ["a", "1", "ab", "👍👍", "😀x", " ", "\u200d", "中", "á", "👨‍👩‍👧‍👦" * 2, "🏳️‍🌈🏳️‍🌈"],
    ids=lambda e: e.encode().hex(),
)
def test_anything_but_one_emoji_is_400(api: Api, emoji: str) -> None:
    alice, bob = new_friends(api)
    sent = direct_message(api, alice, bob)
    assert_error(api.put(reaction_url(sent["id"], emoji), headers=bob.headers), 400, EMOJI_ERROR)


def test_an_emoji_over_32_bytes_or_not_utf8_is_400(api: Api) -> None:
    alice, bob = new_friends(api)
    sent = direct_message(api, alice, bob)
    # One cluster: a family joined by zero-width joiners, 7 people long (46 bytes).
    long_family = "\u200d".join(["👨"] * 7)
    assert len(long_family.encode()) > 32
    assert api.put(reaction_url(sent["id"], long_family), headers=bob.headers).status == 400
    assert api.put(f"{message_url(sent['id'])}/reactions/%FF%FE", headers=bob.headers).status == 400


def test_only_participants_react(api: Api) -> None:
    alice, bob = new_friends(api)
    stranger = create_user(api)
    sent = direct_message(api, alice, bob)
    assert api.put(reaction_url(sent["id"], "👍"), headers=stranger.headers).status == 403
    assert api.delete(reaction_url(sent["id"], "👍"), headers=stranger.headers).status == 403
    assert api.put(reaction_url(str(ObjectId()), "👍"), headers=bob.headers).status == 404


def test_the_21st_different_emoji_is_refused(api: Api) -> None:
    alice, bob = new_friends(api)
    sent = direct_message(api, alice, bob)
    emojis = [chr(0x1F600 + i) for i in range(21)]
    for emoji in emojis[:20]:
        assert api.put(reaction_url(sent["id"], emoji), headers=bob.headers).status == 204
    assert_error(
        api.put(reaction_url(sent["id"], emojis[20]), headers=bob.headers),
        422,
        "A message can have at most 20 different reactions",
    )
    # One of the twenty again is fine, by anyone.
    assert api.put(reaction_url(sent["id"], emojis[0]), headers=alice.headers).status == 204
    assert len(shown_in_history(api, bob, alice, sent["id"])["reactions"]) == 20


def test_a_recalled_message_takes_no_reaction_and_loses_its_own(api: Api) -> None:
    alice, bob = new_friends(api)
    sent = direct_message(api, alice, bob)
    assert api.put(reaction_url(sent["id"], "👍"), headers=bob.headers).status == 204
    assert api.delete(message_url(sent["id"]), headers=alice.headers).status == 204
    assert shown_in_history(api, bob, alice, sent["id"])["reactions"] == []
    assert_error(
        api.put(reaction_url(sent["id"], "👍"), headers=bob.headers), 422, "A recalled message cannot be reacted to"
    )
    assert api.delete(reaction_url(sent["id"], "👍"), headers=bob.headers).status == 204


def test_group_members_react_and_non_members_cannot(api: Api) -> None:
    lord, member, stranger = create_user(api), create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,))
    sent = send_group(api, group_id, lord, "vote")
    assert sent.status == 201
    message_id = sent.json["id"]
    assert api.put(reaction_url(message_id, "👍", group_id), headers=member.headers).status == 204
    assert api.put(reaction_url(message_id, "👍", group_id), headers=lord.headers).status == 204
    assert api.put(reaction_url(message_id, "👍", group_id), headers=stranger.headers).status == 403
    assert group_shown(api, group_id, member, message_id)["reactions"] == [{"emoji": "👍", "count": 2, "me": True}]
    other_group = create_group(api, lord)
    assert api.put(reaction_url(message_id, "👍", other_group), headers=lord.headers).status == 404
    [first, _] = [e for e in events_of(api, lord) if e["type"] == "reaction"]
    assert first["conversation"] == {"type": "group", "id": group_id}
    assert first["user_id"] == member.id


def test_many_users_reacting_at_once_lose_none(api: Api) -> None:
    """Twenty members put the same emoji, and another one each, at the same moment: every reaction is kept."""
    lord = create_user(api)
    members = [create_user(api) for _ in range(19)]
    group_id = create_group(api, lord, members=members)
    message_id = send_group(api, group_id, lord, "react!").json["id"]
    everyone = [lord, *members]
    requests = [("put", reaction_url(message_id, "🔥", group_id), {"headers": user.headers}) for user in everyone]
    requests += [("put", reaction_url(message_id, "👍", group_id), {"headers": user.headers}) for user in everyone]
    answers = api.concurrently(requests)
    assert [a.status_code for a in answers] == [204] * len(requests), [a.text for a in answers if a.status_code != 204]
    shown = group_shown(api, group_id, members[0], message_id)["reactions"]
    assert sorted((r["emoji"], r["count"], r["me"]) for r in shown) == [("👍", 20, True), ("🔥", 20, True)]


def test_twenty_emojis_at_once_never_make_more_than_twenty(api: Api) -> None:
    alice, bob = new_friends(api)
    sent = direct_message(api, alice, bob)
    emojis = [chr(0x1F600 + i) for i in range(30)]
    answers = api.concurrently(("put", reaction_url(sent["id"], e), {"headers": bob.headers}) for e in emojis)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [204] * 20 + [422] * 10
    assert len(shown_in_history(api, bob, alice, sent["id"])["reactions"]) == 20


@pytest.mark.usefixtures(fresh_hub.__name__)
def test_a_reaction_reaches_the_senders_socket_live(api: Api) -> None:
    alice, bob = new_friends(api)
    sent = direct_message(api, alice, bob)

    async def scenario() -> dict[str, Any]:
        ws, _ = await open_socket(ws_url(api), alice)
        async with httpx.AsyncClient(base_url=f"http://{api.client.host}:{api.client.port}") as http:
            answer = await http.put(reaction_url(sent["id"], "😮"), headers=bob.headers)
            assert answer.status_code == 204
        frame = await next_frame(ws)
        await ws.close()
        return frame

    frame = run(api, scenario())
    assert frame == {
        "type": "reaction",
        "seq": frame["seq"],
        "message_id": sent["id"],
        "conversation": {"type": "user", "id": bob.id},
        "emoji": "😮",
        "user_id": bob.id,
        "added": True,
    }


@pytest.mark.usefixtures(fresh_hub.__name__)
def test_an_edit_event_carries_each_viewers_own_me(api: Api) -> None:
    """`message_edited` carries the whole message: each participant's frame marks their own reactions."""
    alice, bob = new_friends(api)
    sent = direct_message(api, alice, bob, "v1")
    assert api.put(reaction_url(sent["id"], "👍"), headers=bob.headers).status == 204

    async def scenario() -> list[dict[str, Any]]:
        sockets = [(await open_socket(ws_url(api), user))[0] for user in (alice, bob)]
        async with httpx.AsyncClient(base_url=f"http://{api.client.host}:{api.client.port}") as http:
            answer = await http.patch(message_url(sent["id"]), json={"msg": "v2"}, headers=alice.headers)
            assert answer.status_code == 200
        frames = [await next_frame(ws) for ws in sockets]
        for ws in sockets:
            await ws.close()
        return frames

    to_alice, to_bob = run(api, scenario())
    assert to_alice["message"]["reactions"] == [{"emoji": "👍", "count": 1, "me": False}]
    assert to_bob["message"]["reactions"] == [{"emoji": "👍", "count": 1, "me": True}]
    assert "_reactors" not in to_alice["message"]
    assert "_reactors" not in to_bob["message"]


# Any sequence of PUT and DELETE by several users: the counts are the distinct users, `me` right for each.

USERS = 3
EMOJIS = ["👍", "🎉", "😂"]
CALLS = st.lists(st.tuples(st.integers(0, USERS - 1), st.sampled_from(EMOJIS), st.booleans()), min_size=1, max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=CALLS)
def test_reaction_counts_are_the_distinct_users_whatever_the_calls(
    api: Api, calls: list[tuple[int, str, bool]]
) -> None:
    users = [create_user(api) for _ in range(USERS)]
    group_id = create_group(api, users[0], members=users[1:])
    message_id = send_group(api, group_id, users[0], "m").json["id"]
    expected: dict[str, set[int]] = {}
    for who, emoji, add in calls:
        url = reaction_url(message_id, emoji, group_id)
        answer = (api.put if add else api.delete)(url, headers=users[who].headers)
        assert answer.status == 204, answer.text
        if add:
            expected.setdefault(emoji, set()).add(who)
        else:
            expected.get(emoji, set()).discard(who)
    for index, viewer in enumerate(users):
        shown = group_shown(api, group_id, viewer, message_id)["reactions"]
        assert sorted((r["emoji"], r["count"], r["me"]) for r in shown) == sorted(
            (emoji, len(who), index in who) for emoji, who in expected.items() if who
        )
