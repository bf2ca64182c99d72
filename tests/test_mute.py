"""Mute (issue 13): PUT/DELETE /api/conversations/<user|group>/<id>/mute, the entries' `muted`, and
GET /api/conversations/unread, counted exactly as the list counts each conversation's `unread`."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo.database import Database

from tests.counted import Counted, commands, counted
from tests.factories import TestUser, create_user, direct_message, insert_group, insert_group_messages, make_friends
from tests.helpers import Api, assert_error

__all__ = ["counted"]  # a fixture used by name

UNKNOWN_ID = "0123456789abcdef01234567"
Db = Database[dict[str, Any]]


def mute(api: Api, me: TestUser, kind: str, conversation_id: str) -> Any:
    return api.put(f"/api/conversations/{kind}/{conversation_id}/mute", headers=me.headers)


def unmute(api: Api, me: TestUser, kind: str, conversation_id: str) -> Any:
    return api.delete(f"/api/conversations/{kind}/{conversation_id}/mute", headers=me.headers)


def listed(api: Api, me: TestUser) -> dict[tuple[str, str], dict[str, Any]]:
    response = api.get("/api/conversations?limit=200", headers=me.headers)
    assert response.status == 200, response.text
    return {(c["type"], c["id"]): c for c in response.json}


def unread(api: Api, me: TestUser) -> dict[str, int]:
    response = api.get("/api/conversations/unread", headers=me.headers)
    assert response.status == 200, response.text
    totals: dict[str, int] = response.json
    return totals


def test_muting_a_friend_and_a_group_shows_on_their_entries_and_twice_changes_nothing(api: Api, sync_db: Db) -> None:
    me, friend = create_user(api), create_user(api)
    make_friends(api, me, friend)
    direct_message(api, friend, me, "hi")
    group_id = insert_group(sync_db, friend, me)
    before = listed(api, me)
    assert [c["muted"] for c in before.values()] == [False, False]
    for _ in range(2):
        assert mute(api, me, "user", friend.id).status == 204
        assert mute(api, me, "group", group_id).status == 204
    after = listed(api, me)
    assert after[("user", friend.id)]["muted"] is True
    assert after[("group", group_id)]["muted"] is True
    # Muting hides nothing and moves nothing: only the flag differs.
    assert list(after) == list(before)
    assert {key: {**c, "muted": False} for key, c in after.items()} == before
    # It is mine alone: the friend's entry for me is not muted.
    assert listed(api, friend)[("user", me.id)]["muted"] is False
    for _ in range(2):
        assert unmute(api, me, "user", friend.id).status == 204
        assert unmute(api, me, "group", group_id).status == 204
    assert listed(api, me) == before


def test_muting_answers_as_marking_read_does_for_strangers_unknown_ids_and_other_groups(api: Api, sync_db: Db) -> None:
    me, stranger = create_user(api), create_user(api)
    their_group = insert_group(sync_db, stranger)
    for send in (mute, unmute):
        assert_error(send(api, me, "user", stranger.id), 403, "This user is not your friend")
        assert api.put(f"/api/conversations/user/{stranger.id}/read", headers=me.headers).status == 403
        assert_error(send(api, me, "user", UNKNOWN_ID), 404, "User not found")
        assert send(api, me, "user", "not-an-id").status == 404
        assert_error(send(api, me, "group", their_group), 403, "Only members of the group may do this")
        assert api.put(f"/api/conversations/group/{their_group}/read", headers=me.headers).status == 403
        assert send(api, me, "group", UNKNOWN_ID).status == 404
        assert send(api, me, "group", "not-an-id").status == 404
    assert api.put(f"/api/conversations/user/{stranger.id}/mute").status == 401


def test_unread_totals_split_muted_conversations_from_the_others(api: Api, sync_db: Db) -> None:
    me, loud, quiet = create_user(api), create_user(api), create_user(api)
    make_friends(api, me, loud)
    make_friends(api, me, quiet)
    assert unread(api, me) == {"total": 0, "muted": 0}
    for text in ("a", "b"):
        direct_message(api, loud, me, text)
    direct_message(api, quiet, me, "c")
    direct_message(api, me, quiet, "mine never counts")
    noisy = insert_group(sync_db, loud, me, quiet)
    insert_group_messages(sync_db, noisy, quiet, count=5)
    assert unread(api, me) == {"total": 8, "muted": 0}
    assert mute(api, me, "group", noisy).status == 204
    assert mute(api, me, "user", quiet.id).status == 204
    assert unread(api, me) == {"total": 2, "muted": 6}
    assert api.put(f"/api/conversations/group/{noisy}/read", headers=me.headers).status == 204
    assert unread(api, me) == {"total": 2, "muted": 1}
    assert unmute(api, me, "user", quiet.id).status == 204
    assert unread(api, me) == {"total": 3, "muted": 0}
    assert api.get("/api/conversations/unread").status == 401


# One conversation's steps: messages from the other side before my read mark, whether I mark it read then,
# theirs after, mine, and whether I mute it.
CONVERSATION = st.tuples(st.integers(0, 3), st.booleans(), st.integers(0, 2), st.integers(0, 1), st.booleans())


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(direct=st.lists(CONVERSATION, min_size=2, max_size=2), grouped=st.lists(CONVERSATION, min_size=2, max_size=2))
def test_unread_totals_are_the_lists_unread_counts_split_by_mute(
    api: Api,
    sync_db: Db,
    direct: list[tuple[int, bool, int, int, bool]],
    grouped: list[tuple[int, bool, int, int, bool]],
) -> None:
    me, first, second = create_user(api), create_user(api), create_user(api)
    expected = {"total": 0, "muted": 0}
    for friend, (before, read, after, mine, muted) in zip((first, second), direct, strict=True):
        make_friends(api, me, friend)
        for i in range(before):
            direct_message(api, friend, me, f"before {i}")
        if read:
            assert api.put(f"/api/conversations/user/{friend.id}/read", headers=me.headers).status == 204
        for i in range(after):
            direct_message(api, friend, me, f"after {i}")
        for i in range(mine):
            direct_message(api, me, friend, f"mine {i}")
        if muted:
            assert mute(api, me, "user", friend.id).status == 204
        expected["muted" if muted else "total"] += after + (0 if read else before)
    for before, read, after, mine, muted in grouped:
        group_id = insert_group(sync_db, first, me)
        if before:
            insert_group_messages(sync_db, group_id, first, count=before)
        if read:
            assert api.put(f"/api/conversations/group/{group_id}/read", headers=me.headers).status == 204
        if after:
            insert_group_messages(sync_db, group_id, first, count=after)
        if mine:
            insert_group_messages(sync_db, group_id, me, count=mine)
        if muted:
            assert mute(api, me, "group", group_id).status == 204
        expected["muted" if muted else "total"] += after + (0 if read else before)
    entries = listed(api, me).values()
    from_list = {
        "total": sum(c["unread"] for c in entries if not c["muted"]),
        "muted": sum(c["unread"] for c in entries if c["muted"]),
    }
    assert unread(api, me) == from_list == expected


def test_unread_totals_take_one_count_per_conversation_with_news_and_mute_one_write(
    counted: Counted, sync_db: Db
) -> None:
    api = counted.api
    me, first, second, third = (create_user(api) for _ in range(4))
    for friend in (first, second, third):
        make_friends(api, me, friend)
    # Only friends: the friendships and the memberships (together), then one count per conversation with news.
    direct_message(api, first, me, "news")
    direct_message(api, second, me, "news")
    direct_message(api, third, me, "read")
    assert api.put(f"/api/conversations/user/{third.id}/read", headers=me.headers).status == 204
    response, trips = counted.count(lambda: api.get("/api/conversations/unread", headers=me.headers))
    assert response.json == {"total": 2, "muted": 0}
    assert commands(trips) == sorted(
        [("find", "friendships"), ("find", "group_members")] + [("find", "user_messages")] * 2
    )
    # With groups: their documents too (one `$in` on `_id`), and a count for the one with news. For N
    # conversations of which K have a message past my read position: 3 + K commands (2 + K without groups; the token's
    # user is not read since issue 14).
    busy = insert_group(sync_db, first, me)
    insert_group_messages(sync_db, busy, first, count=3)
    insert_group(sync_db, first, me)  # no message: no count
    response, trips = counted.count(lambda: api.get("/api/conversations/unread", headers=me.headers))
    assert response.json == {"total": 5, "muted": 0}
    assert trips.data == 3 + 3
    assert sorted(c for c in trips.commands if c[1] in {"user_messages", "group_messages"}) == [
        ("find", "group_messages"),
        ("find", "user_messages"),
        ("find", "user_messages"),
    ]
    # Muting: one write; a group: the group, then the write.
    response, trips = counted.count(lambda: mute(api, me, "user", first.id))
    assert (response.status, str(trips)) == (204, "update friendships")
    response, trips = counted.count(lambda: mute(api, me, "group", busy))
    assert response.status == 204
    assert commands(trips) == sorted([("find", "groups"), ("update", "group_members")])
