"""Blocks (issue 13): PUT/DELETE/GET /api/blocks, and what a block keeps away: direct messages, friend requests,
group adds (403 in the words a non-friend gets, never "blocked"), typing and presence (dropped without a word).
Blocking unfriends nobody and hides nothing in shared groups; an account deletion takes its blocks both ways."""

from __future__ import annotations

import json
from typing import Any

from bson import ObjectId
from pymongo.database import Database

from chat_api.users.models import User
from tests.counted import Counted, commands, counted
from tests.factories import (
    TestUser,
    add_member,
    create_group,
    create_user,
    make_friends,
    new_friends,
    request_friend,
    send_direct,
    send_group,
)
from tests.helpers import Api, assert_error
from tests.realtime_helpers import frames_until, fresh_hub, no_frame, open_socket, run, ws_url

__all__ = ["counted", "fresh_hub"]  # fixtures used by name

UNKNOWN_ID = "0123456789abcdef01234567"
Db = Database[dict[str, Any]]


def block(api: Api, me: TestUser, user_id: str) -> Any:
    return api.put(f"/api/blocks/{user_id}", headers=me.headers)


def unblock(api: Api, me: TestUser, user_id: str) -> Any:
    return api.delete(f"/api/blocks/{user_id}", headers=me.headers)


def blocked_ids(api: Api, me: TestUser, query: str = "") -> list[str]:
    response = api.get(f"/api/blocks{query}", headers=me.headers)
    assert response.status == 200, response.text
    return [user["id"] for user in response.json]


def refusal_says_nothing_of_the_block(response: Any, expected_message: str) -> None:
    assert_error(response, 403, expected_message)
    assert "block" not in response.json["message"].lower()


# The routes


def test_blocking_twice_and_unblocking_twice_answer_204_and_change_nothing_more(api: Api) -> None:
    me, pest = create_user(api), create_user(api)
    assert block(api, me, pest.id).status == 204
    assert block(api, me, pest.id).status == 204
    response = api.get("/api/blocks", headers=me.headers)
    assert response.headers["x-total-count"] == "1"
    [listed] = response.json
    assert (listed["id"], listed["username"], listed["chat_id"]) == (pest.id, pest.username, pest.chat_id)
    assert "blocked_at" in listed
    assert "password" not in listed
    assert unblock(api, me, pest.id).status == 204
    assert unblock(api, me, pest.id).status == 204
    assert blocked_ids(api, me) == []


def test_blocking_yourself_is_invalid_and_an_unknown_user_is_not_found(api: Api) -> None:
    me = create_user(api)
    for send in (block, unblock):
        assert_error(send(api, me, me.id), 400, "You cannot block or unblock yourself")
        assert_error(send(api, me, UNKNOWN_ID), 404, "User not found")
        assert send(api, me, "not-an-id").status == 404
    assert api.put(f"/api/blocks/{me.id}").status == 401
    assert api.get("/api/blocks").status == 401


def test_my_blocks_are_paged_in_the_order_i_blocked_them(api: Api) -> None:
    me = create_user(api)
    pests = [create_user(api) for _ in range(3)]
    for pest in (pests[1], pests[0], pests[2]):
        assert block(api, me, pest.id).status == 204
    assert blocked_ids(api, me, "?limit=2") == [pests[1].id, pests[0].id]
    response = api.get("/api/blocks?limit=2&offset=2", headers=me.headers)
    assert ([user["id"] for user in response.json], response.headers["x-total-count"]) == ([pests[2].id], "3")
    assert api.get("/api/blocks?limit=0", headers=me.headers).status == 400
    # A block is one person's choice: the blocked ones block nobody.
    assert blocked_ids(api, pests[0]) == []


# What a block keeps away


def test_someone_i_blocked_cannot_message_me_in_the_words_a_non_friend_gets(api: Api) -> None:
    me, pest, stranger = create_user(api), create_user(api), create_user(api)
    make_friends(api, me, pest)
    not_a_friend = send_direct(api, stranger, me, "hi")
    assert_error(not_a_friend, 403, "You can only send messages to your friends")
    assert block(api, me, pest.id).status == 204
    refusal_says_nothing_of_the_block(send_direct(api, pest, me, "hey"), not_a_friend.json["message"])
    # Blocking does not unfriend, and I may still write to them.
    assert [f["id"] for f in api.get("/api/friends", headers=me.headers).json] == [pest.id]
    assert [f["id"] for f in api.get("/api/friends", headers=pest.headers).json] == [me.id]
    assert send_direct(api, me, pest, "stop it").status == 201
    assert unblock(api, me, pest.id).status == 204
    assert send_direct(api, pest, me, "sorry").status == 201
    history = api.get(f"/api/user-message/{me.id}/{pest.id}", headers=me.headers).json
    assert [m["msg"] for m in history] == ["sorry", "stop it"]


def test_someone_i_blocked_cannot_send_me_a_friend_request(api: Api) -> None:
    me, pest = create_user(api), create_user(api)
    assert block(api, me, pest.id).status == 204
    refusal_says_nothing_of_the_block(request_friend(api, pest, me.id), "You cannot send this user a friend request")
    assert api.get("/api/user-requests", headers=me.headers).json == []
    # The blocker may still ask them.
    assert request_friend(api, me, pest.id).status == 201


def test_a_friend_who_blocks_me_still_answers_already_friends_to_my_request(api: Api) -> None:
    me, pest = create_user(api), create_user(api)
    make_friends(api, me, pest)
    assert block(api, me, pest.id).status == 204
    assert_error(request_friend(api, pest, me.id), 422, "You are already friends")


def test_someone_i_blocked_cannot_add_me_to_a_group_but_an_admin_i_did_not_block_can(api: Api) -> None:
    me, pest, admin, stranger = create_user(api), create_user(api), create_user(api), create_user(api)
    group_id = create_group(api, pest, admins=[admin])
    make_friends(api, pest, me)
    make_friends(api, admin, me)
    not_a_friend = add_member(api, group_id, pest, stranger)
    assert_error(not_a_friend, 403, "You can only add your friends to a group")
    assert block(api, me, pest.id).status == 204
    refusal_says_nothing_of_the_block(add_member(api, group_id, pest, me), not_a_friend.json["message"])
    assert add_member(api, group_id, admin, me).status == 201


def test_a_block_hides_nothing_in_a_shared_group(api: Api) -> None:
    me, pest = create_user(api), create_user(api)
    group_id = create_group(api, pest, members=[me])
    assert block(api, me, pest.id).status == 204
    assert send_group(api, group_id, pest, "to everyone").status == 201
    history = api.get(f"/api/groups/{group_id}/messages", headers=me.headers).json
    assert [(m["from_id"], m["msg"]) for m in history] == [(pest.id, "to everyone")]
    members = api.get(f"/api/groups/{group_id}/members", headers=me.headers).json
    assert {m["id"] for m in members} == {me.id, pest.id}


def test_typing_from_someone_i_blocked_is_dropped_while_another_friends_arrives(api: Api, fresh_hub: None) -> None:
    me, pest = new_friends(api)
    friend = create_user(api)
    make_friends(api, me, friend)
    assert block(api, me, pest.id).status == 204

    async def scenario() -> None:
        mine, _ = await open_socket(ws_url(api), me)
        typist, _ = await open_socket(ws_url(api), pest)
        other, _ = await open_socket(ws_url(api), friend)
        await typist.send(json.dumps({"type": "typing", "to_id": me.id}))
        await no_frame(typist)  # no error either: the typist is not told
        await other.send(json.dumps({"type": "typing", "to_id": me.id}))
        frames = await frames_until(mine, lambda got: any(f["type"] == "typing" for f in got))
        typing = [f for f in frames if f["type"] == "typing"]
        assert [(f["from_id"], f["to_id"]) for f in typing] == [(friend.id, me.id)]
        await no_frame(mine)
        # The blocked one still hears my typing: a block keeps them away from me, not me from them.
        await mine.send(json.dumps({"type": "typing", "to_id": pest.id}))
        heard = await frames_until(typist, lambda got: any(f["type"] == "typing" for f in got))
        assert heard[-1]["from_id"] == me.id
        for ws in (mine, typist, other):
            await ws.close()

    run(api, scenario())


async def set_offline(*users: TestUser) -> None:
    collection = User.get_pymongo_collection()
    await collection.update_many({"_id": {"$in": [ObjectId(u.id) for u in users]}}, {"$set": {"flag": "offline"}})


def test_i_get_no_presence_from_someone_i_blocked(api: Api, fresh_hub: None) -> None:
    me, pest = new_friends(api)
    friend = create_user(api)
    make_friends(api, me, friend)
    assert block(api, me, pest.id).status == 204

    async def scenario() -> None:
        await set_offline(pest, friend)
        watcher, _ = await open_socket(ws_url(api), me)
        # Each socket's presence is told before its `ready`: the pest's, if told, would come first.
        pest_socket, _ = await open_socket(ws_url(api), pest)
        friend_socket, _ = await open_socket(ws_url(api), friend)
        frames = await frames_until(
            watcher, lambda got: {"type": "presence", "user_id": friend.id, "flag": "online"} in got
        )
        assert [f for f in frames if f.get("user_id") == pest.id] == []
        await no_frame(watcher)
        for ws in (watcher, pest_socket, friend_socket):
            await ws.close()

    run(api, scenario())


def test_an_account_deletion_takes_its_blocks_both_ways(api: Api, sync_db: Db) -> None:
    me, pest, other = create_user(api), create_user(api), create_user(api)
    assert block(api, me, pest.id).status == 204
    assert block(api, other, me.id).status == 204
    assert block(api, other, pest.id).status == 204
    response = api.delete(f"/api/users/{me.id}", headers=me.headers)
    assert response.status == 200, response.text
    left = [(doc["owner_id"], doc["blocked_id"]) for doc in sync_db.blocks.find({}, {"_id": 0})]
    assert left == [(other.id, pest.id)]
    assert blocked_ids(api, other) == [pest.id]


# Store commands


def test_the_blocks_routes_take_their_store_commands(counted: Counted) -> None:
    api = counted.api
    me, pest = create_user(api), create_user(api)
    # (No route reads the token's user since issue 14.) The user exists, the insert (a second time: the unique
    # index refuses it, nothing changes)
    response, trips = counted.count(lambda: block(api, me, pest.id))
    assert response.status == 204
    assert str(trips) == "find users, insert blocks"
    # the delete
    response, trips = counted.count(lambda: unblock(api, me, pest.id))
    assert response.status == 204
    assert str(trips) == "delete blocks"
    # the delete that finds nothing, then the user exists (404 or 204)
    response, trips = counted.count(lambda: unblock(api, me, pest.id))
    assert response.status == 204
    assert str(trips) == "delete blocks, find users"
    block(api, me, pest.id)
    # the page + its count (together), the profiles
    response, trips = counted.count(lambda: api.get("/api/blocks", headers=me.headers))
    assert response.status == 200
    assert commands(trips) == sorted([("find", "blocks"), ("find", "blocks"), ("find", "users")])
