"""GET /api/conversations and marking a conversation read (friends and groups).

Groups are built by another part of the API: their documents are written directly here (tests/factories.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo.database import Database

from chat_api.groups.repository import group_messages
from tests.factories import TestUser, create_user, direct_message, insert_group, insert_group_messages, make_friends
from tests.helpers import Api, assert_error

UNKNOWN_ID = "0123456789abcdef01234567"
Db = Database[dict[str, Any]]


def conversations(api: Api, user: TestUser, query: str = "") -> Any:
    response = api.get(f"/api/conversations{query}", headers=user.headers)
    assert response.status == 200, response.text
    return response


def test_conversations_are_friends_with_messages_and_groups_most_recent_first(api: Api, sync_db: Db) -> None:
    me, alice, bob, quiet = (create_user(api, avatar=f"/a/{i}.png") for i in range(4))
    for friend in (alice, bob, quiet):
        make_friends(api, me, friend)
    old_group = insert_group(sync_db, me, bob, group_name="old", created_at=datetime.now(UTC) - timedelta(days=3))
    direct_message(api, alice, me, "from alice")
    busy_group = insert_group(sync_db, alice, me, group_name="busy", group_avatar="/g.png")
    insert_group_messages(sync_db, busy_group, alice, msg="in busy")
    last = direct_message(api, me, bob, "to bob")
    response = conversations(api, me)
    assert response.headers["x-total-count"] == "4"
    listed = response.json
    assert [(c["type"], c["id"]) for c in listed] == [
        ("user", bob.id),
        ("group", busy_group),
        ("user", alice.id),
        ("group", old_group),
    ]
    to_bob = listed[0]
    assert to_bob["name"] == bob.username
    assert to_bob["avatar"] == "/a/2.png"
    assert to_bob["unread"] == 0
    shown = {k: last[k] for k in ("id", "from_id", "msg", "msg_type", "created_at")}
    assert to_bob["last_message"] == {**shown, "recalled": False}
    assert to_bob["updated_at"] == last["created_at"]
    busy = listed[1]
    assert (busy["name"], busy["avatar"], busy["unread"]) == ("busy", "/g.png", 1)
    assert busy["last_message"]["msg"] == "in busy"
    assert listed[2]["unread"] == 1
    assert listed[2]["last_message"]["msg"] == "from alice"
    old = listed[3]
    assert old["last_message"] is None
    assert old["unread"] == 0
    assert datetime.fromisoformat(old["updated_at"]) < datetime.now(UTC) - timedelta(days=2)


def test_friend_without_messages_is_not_a_conversation(api: Api) -> None:
    me, friend = create_user(api), create_user(api)
    make_friends(api, me, friend)
    response = conversations(api, me)
    assert response.json == []
    assert response.headers["x-total-count"] == "0"


def test_other_peoples_conversations_are_not_listed(api: Api, sync_db: Db) -> None:
    me, a, b = create_user(api), create_user(api), create_user(api)
    make_friends(api, a, b)
    direct_message(api, a, b)
    insert_group(sync_db, a, b, group_name="theirs")
    assert conversations(api, me).json == []


def test_unread_counts_messages_from_others_since_i_read(api: Api, sync_db: Db) -> None:
    me, friend = create_user(api), create_user(api)
    make_friends(api, me, friend)
    for i in range(3):
        direct_message(api, friend, me, f"m{i}")
    direct_message(api, me, friend, "my reply")
    group = insert_group(sync_db, friend, me)
    read_up_to = insert_group_messages(sync_db, group, friend, count=2)
    sync_db.group_members.update_one({"group_id": group, "user_id": me.id}, {"$set": {"read_n": read_up_to}})
    insert_group_messages(sync_db, group, friend, count=3)
    insert_group_messages(sync_db, group, me, count=2)  # my own never count
    unread = {c["type"]: c["unread"] for c in conversations(api, me).json}
    assert unread == {"user": 3, "group": 3}


def test_group_unread_is_exact_past_999(api: Api, sync_db: Db) -> None:
    # It was capped at 999 until issue 11: unread counts are exact now.
    me, other = create_user(api), create_user(api)
    group = insert_group(sync_db, other, me, group_name="loud")
    insert_group_messages(sync_db, group, other, count=1_200)
    [conversation] = conversations(api, me).json
    assert conversation["unread"] == 1_200


def test_conversations_page_with_total(api: Api, sync_db: Db) -> None:
    me = create_user(api)
    hours_ago = [datetime.now(UTC) - timedelta(hours=10 - i) for i in range(5)]
    groups = [insert_group(sync_db, me, group_name=f"g{i}", created_at=at) for i, at in enumerate(hours_ago)]
    newest_first = groups[::-1]
    pages = [conversations(api, me, f"?limit=2&offset={offset}") for offset in (0, 2, 4)]
    assert all(page.headers["x-total-count"] == "5" for page in pages)
    assert [c["id"] for page in pages for c in page.json] == newest_first


@pytest.mark.parametrize("query", ["?limit=0", "?limit=201", "?offset=-1", "?limit=", "?offset=x"])
def test_conversations_bad_paging_is_400(api: Api, query: str) -> None:
    me = create_user(api)
    assert api.get(f"/api/conversations{query}", headers=me.headers).status == 400


def test_mark_user_conversation_read(api: Api, sync_db: Db) -> None:
    me, friend = create_user(api), create_user(api)
    make_friends(api, me, friend)
    direct_message(api, friend, me, "one")
    last = direct_message(api, friend, me, "two")
    assert conversations(api, me).json[0]["unread"] == 2
    response = api.put(f"/api/conversations/user/{friend.id}/read", headers=me.headers)
    assert response.status == 204
    assert conversations(api, me).json[0]["unread"] == 0
    mine = sync_db.friendships.find_one({"owner_id": me.id})
    assert mine is not None
    stored = sync_db.user_messages.find_one({"key": last["id"]}, {"n": 1})
    assert stored is not None
    assert mine["read_n"] == stored["n"] == 2
    # The friend's side is untouched, and reading an empty conversation is fine too.
    assert api.put(f"/api/conversations/user/{me.id}/read", headers=friend.headers).status == 204
    direct_message(api, friend, me, "three")
    assert conversations(api, me).json[0]["unread"] == 1


def test_mark_read_of_a_non_friend_is_forbidden(api: Api) -> None:
    me, stranger = create_user(api), create_user(api)
    response = api.put(f"/api/conversations/user/{stranger.id}/read", headers=me.headers)
    assert response.status == 403
    assert response.json == {"message": "This user is not your friend"}


@pytest.mark.parametrize("user_id", [UNKNOWN_ID, "nope"])
def test_mark_read_of_an_unknown_user_is_404(api: Api, user_id: str) -> None:
    me = create_user(api)
    assert api.put(f"/api/conversations/user/{user_id}/read", headers=me.headers).status == 404


def test_mark_group_conversation_read(api: Api, sync_db: Db) -> None:
    me, other = create_user(api), create_user(api)
    group = insert_group(sync_db, other, me)
    last = insert_group_messages(sync_db, group, other, count=4)
    assert conversations(api, me).json[0]["unread"] == 4
    assert api.put(f"/api/conversations/group/{group}/read", headers=me.headers).status == 204
    assert conversations(api, me).json[0]["unread"] == 0
    member = sync_db.group_members.find_one({"group_id": group, "user_id": me.id})
    assert member is not None
    assert member["read_n"] == last == 4
    insert_group_messages(sync_db, group, other, count=2)
    assert conversations(api, me).json[0]["unread"] == 2
    assert conversations(api, other).json[0]["unread"] == 0


def test_mark_read_of_a_group_without_messages_is_204(api: Api, sync_db: Db) -> None:
    me = create_user(api)
    group = insert_group(sync_db, me)
    assert api.put(f"/api/conversations/group/{group}/read", headers=me.headers).status == 204


def test_mark_read_of_a_group_i_am_not_in_is_forbidden(api: Api, sync_db: Db) -> None:
    me, other = create_user(api), create_user(api)
    group = insert_group(sync_db, other)
    response = api.put(f"/api/conversations/group/{group}/read", headers=me.headers)
    assert response.status == 403


@pytest.mark.parametrize("group_id", [UNKNOWN_ID, "nope"])
def test_mark_read_of_an_unknown_group_is_404(api: Api, group_id: str) -> None:
    me = create_user(api)
    assert_error(api.put(f"/api/conversations/group/{group_id}/read", headers=me.headers), 404, "Group not found")


def test_conversation_routes_need_a_token(api: Api) -> None:
    assert api.get("/api/conversations").status == 401
    assert api.put(f"/api/conversations/user/{UNKNOWN_ID}/read").status == 401
    assert api.put(f"/api/conversations/group/{UNKNOWN_ID}/read").status == 401


def plan(explained: dict[str, Any]) -> str:
    return str(explained["queryPlanner"]["winningPlan"])


def test_conversation_queries_are_served_by_indexes(api: Api, sync_db: Db) -> None:
    me = create_user(api)
    group = insert_group(sync_db, me)
    insert_group_messages(sync_db, group, me)
    queries = [
        ("friendships", {"owner_id": {"$eq": me.id}, "message_n": {"$gt": 0}}),
        ("group_members", {"user_id": {"$eq": me.id}}),
        ("group_messages", group_messages.unread_filter(group, 0, me.id)),
    ]
    for collection, query in queries:
        shown = plan(sync_db[collection].find(query).explain())
        assert "USING INDEX" in shown or "IXSCAN" in shown, (collection, shown)


def test_group_dates_written_by_set_are_read(api: Api, sync_db: Db) -> None:
    # nx-27017 keeps a datetime written by `$set` as a naive ISO string; MongoDB as a date.
    me = create_user(api)
    group = insert_group(sync_db, me)
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    sync_db.groups.update_one({"_id": ObjectId(group)}, {"$set": {"created_at": moment}})
    [conversation] = conversations(api, me).json
    assert datetime.fromisoformat(conversation["updated_at"]) == moment


def test_group_ids_in_upper_case_name_the_same_group(api: Api, sync_db: Db) -> None:
    me, other = create_user(api), create_user(api)
    group = insert_group(sync_db, other, me)
    insert_group_messages(sync_db, group, other, count=2)
    assert api.put(f"/api/conversations/group/{group.upper()}/read", headers=me.headers).status == 204
    assert conversations(api, me).json[0]["unread"] == 0
