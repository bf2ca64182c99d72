"""Groups and their members over real HTTP: creation, listing, changes, deletion, identities and permissions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bson import ObjectId
from pymongo.database import Database

from tests.conftest import OtherApp
from tests.factories import TestUser, add_member, create_group, create_user, make_friends, request_friend
from tests.helpers import Api, assert_error

UNKNOWN_ID = "0123456789abcdef01234567"


def identities(api: Api, group_id: str, viewer: TestUser) -> dict[str, str]:
    response = api.get(f"/api/groups/{group_id}/members", headers=viewer.headers)
    assert response.status == 200, response.text
    return {member["id"]: member["identity"] for member in response.json}


# Creating and reading


def test_create_group_makes_the_creator_its_lord(api: Api) -> None:
    lord = create_user(api)
    response = api.post(
        "/api/groups",
        json={"group_name": "  Hikers  ", "group_desc": "weekends", "group_placard": "bring water"},
        headers=lord.headers,
    )
    assert response.status == 201, response.text
    group_id = response.json["group_id"]
    assert response.headers["location"] == f"/api/groups/{group_id}"
    shown = api.get(f"/api/groups/{group_id}", headers=lord.headers)
    assert shown.status == 200
    assert shown.json["group_name"] == "Hikers"  # trimmed
    assert shown.json["group_desc"] == "weekends"
    assert shown.json["group_avatar"] is None
    assert shown.json["lord_id"] == lord.id
    assert shown.json["identity"] == "lord"
    assert identities(api, group_id, lord) == {lord.id: "lord"}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"group_name": ""},
        {"group_name": "   "},
        {"group_name": "x" * 65},
        {"group_name": 12},
        {"group_name": "ok", "group_desc": "x" * 501},
        {"group_name": "ok", "group_placard": "x" * 2001},
        {"group_name": "ok", "group_avatar": "x" * 2049},
        {"group_name": "ok", "lord_id": UNKNOWN_ID},
    ],
)
def test_create_group_with_invalid_body_is_400(api: Api, body: dict[str, Any]) -> None:
    lord = create_user(api)
    response = api.post("/api/groups", json=body, headers=lord.headers)
    assert response.status == 400, response.text
    assert "message" in response.json


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/groups"),
        ("get", "/api/groups"),
        ("get", f"/api/groups/{UNKNOWN_ID}"),
        ("put", f"/api/groups/{UNKNOWN_ID}"),
        ("delete", f"/api/groups/{UNKNOWN_ID}"),
        ("get", f"/api/groups/{UNKNOWN_ID}/members"),
        ("post", f"/api/groups/{UNKNOWN_ID}/members"),
        ("delete", f"/api/groups/{UNKNOWN_ID}/members/{UNKNOWN_ID}"),
        ("put", f"/api/groups/{UNKNOWN_ID}/members/{UNKNOWN_ID}"),
        ("post", f"/api/groups/{UNKNOWN_ID}/messages"),
        ("get", f"/api/groups/{UNKNOWN_ID}/messages"),
    ],
)
def test_every_group_route_without_token_is_401(api: Api, method: str, path: str) -> None:
    # with an invalid body where there is one: the token is checked first
    response = api.request(method, path, **({"json": {"bogus": True}} if method in ("post", "put") else {}))
    assert response.status == 401
    assert response.json == {"message": "Authorization not found!"}


def test_get_group_is_for_members_only(api: Api) -> None:
    lord, stranger = create_user(api), create_user(api)
    group_id = create_group(api, lord)
    response = api.get(f"/api/groups/{group_id}", headers=stranger.headers)
    assert response.status == 403
    assert response.json["message"]


@pytest.mark.parametrize("group_id", [UNKNOWN_ID, "not-an-id", "0123456789abcdef0123456z"])
def test_get_unknown_or_malformed_group_is_404(api: Api, group_id: str) -> None:
    user = create_user(api)
    assert_error(api.get(f"/api/groups/{group_id}", headers=user.headers), 404, "Group not found")


def test_group_id_in_upper_case_hex_is_the_same_group(api: Api) -> None:
    lord = create_user(api)
    group_id = create_group(api, lord)
    assert api.get(f"/api/groups/{group_id.upper()}", headers=lord.headers).status == 200


def test_list_my_groups_pages_with_total_and_my_identity(api: Api) -> None:
    me, other = create_user(api), create_user(api)
    mine = [create_group(api, me, group_name=f"g{i}") for i in range(3)]
    theirs = create_group(api, other, members=(me,))
    create_group(api, other)  # not mine
    response = api.get("/api/groups", headers=me.headers)
    assert response.status == 200
    assert response.headers["x-total-count"] == "4"
    assert [g["id"] for g in response.json] == [*mine, theirs]
    assert [g["identity"] for g in response.json] == ["lord", "lord", "lord", "user"]
    page = api.get("/api/groups?limit=2&offset=1", headers=me.headers)
    assert [g["id"] for g in page.json] == [mine[1], mine[2]]
    assert page.headers["x-total-count"] == "4"


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "offset=-1", "limit=abc", "limit=1.5"])
def test_list_my_groups_with_bad_paging_is_400(api: Api, query: str) -> None:
    user = create_user(api)
    assert api.get(f"/api/groups?{query}", headers=user.headers).status == 400


def test_list_my_groups_when_none_is_empty(api: Api) -> None:
    user = create_user(api)
    response = api.get("/api/groups", headers=user.headers)
    assert response.status == 200
    assert response.json == []
    assert response.headers["x-total-count"] == "0"


# Changing


def test_lord_and_admin_update_a_group_partially(api: Api) -> None:
    lord, admin = create_user(api), create_user(api)
    group_id = create_group(api, lord, admins=(admin,))
    assert api.put(f"/api/groups/{group_id}", json={"group_desc": "new"}, headers=lord.headers).status == 204
    assert api.put(f"/api/groups/{group_id}", json={"group_name": "renamed"}, headers=admin.headers).status == 204
    shown = api.get(f"/api/groups/{group_id}", headers=admin.headers).json
    assert (shown["group_name"], shown["group_desc"], shown["identity"]) == ("renamed", "new", "admin")
    # null clears an optional field
    assert api.put(f"/api/groups/{group_id}", json={"group_desc": None}, headers=lord.headers).status == 204
    assert api.get(f"/api/groups/{group_id}", headers=lord.headers).json["group_desc"] is None


def test_update_group_by_a_plain_member_is_forbidden(api: Api) -> None:
    lord, member = create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,))
    response = api.put(f"/api/groups/{group_id}", json={"group_name": "mine now"}, headers=member.headers)
    assert response.status == 403
    assert api.get(f"/api/groups/{group_id}", headers=lord.headers).json["group_name"] == "team"


def test_update_group_by_a_non_member_is_forbidden_and_unknown_is_404(api: Api) -> None:
    lord, stranger = create_user(api), create_user(api)
    group_id = create_group(api, lord)
    assert api.put(f"/api/groups/{group_id}", json={"group_name": "x"}, headers=stranger.headers).status == 403
    assert api.put(f"/api/groups/{UNKNOWN_ID}", json={"group_name": "x"}, headers=lord.headers).status == 404


def test_update_group_with_an_empty_body_changes_nothing(api: Api) -> None:
    lord = create_user(api)
    group_id = create_group(api, lord, group_desc="kept")
    assert api.put(f"/api/groups/{group_id}", json={}, headers=lord.headers).status == 204
    assert api.get(f"/api/groups/{group_id}", headers=lord.headers).json["group_desc"] == "kept"


@pytest.mark.parametrize(
    "body", [{"group_name": None}, {"group_name": ""}, {"lord_id": UNKNOWN_ID}, {"group_desc": "x" * 501}, []]
)
def test_update_group_with_invalid_body_is_400(api: Api, body: Any) -> None:
    lord = create_user(api)
    group_id = create_group(api, lord)
    assert api.put(f"/api/groups/{group_id}", json=body, headers=lord.headers).status == 400


# Deleting


def test_lord_deletes_the_group_with_its_members_and_messages(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    lord, member = create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,))
    kept = create_group(api, lord)
    sent = api.post(f"/api/groups/{group_id}/messages", json={"msg": "hi"}, headers=member.headers)
    assert sent.status == 201
    assert api.delete(f"/api/groups/{group_id}", headers=lord.headers).status == 204
    assert api.get(f"/api/groups/{group_id}", headers=lord.headers).status == 404
    assert api.get(f"/api/groups/{group_id}", headers=member.headers).status == 404
    assert sync_db.group_members.count_documents({"group_id": group_id}) == 0
    assert sync_db.group_messages.count_documents({"group_id": group_id}) == 0
    assert [g["id"] for g in api.get("/api/groups", headers=lord.headers).json] == [kept]
    assert api.delete(f"/api/groups/{group_id}", headers=lord.headers).status == 404


def test_delete_group_by_admin_or_member_is_forbidden(api: Api) -> None:
    lord, admin, member = create_user(api), create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,), admins=(admin,))
    assert api.delete(f"/api/groups/{group_id}", headers=admin.headers).status == 403
    assert api.delete(f"/api/groups/{group_id}", headers=member.headers).status == 403
    assert api.get(f"/api/groups/{group_id}", headers=lord.headers).status == 200


def test_a_deletion_cut_short_leaves_the_group_alive_with_its_lord_or_gone(
    api: Api, sync_db: Database[dict[str, Any]]
) -> None:
    lord, member = create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,))
    said = api.post(f"/api/groups/{group_id}/messages", json={"msg": "kept"}, headers=lord.headers).json["id"]
    # Cut after the first step (the other members gone): still a group with its lord and its history.
    sync_db.group_members.delete_many({"group_id": group_id, "user_id": {"$ne": lord.id}})
    assert api.get(f"/api/groups/{group_id}", headers=lord.headers).json["identity"] == "lord"
    shown = api.get(f"/api/groups/{group_id}/messages", headers=lord.headers).json
    assert [m["id"] for m in shown] == [said]
    # Cut after the second (the group document gone, messages and the lord's membership left): gone everywhere.
    sync_db.groups.delete_one({"_id": ObjectId(group_id)})
    for path in ("", "/members", "/messages"):
        assert api.get(f"/api/groups/{group_id}{path}", headers=lord.headers).status == 404
    assert api.post(f"/api/groups/{group_id}/messages", json={"msg": "x"}, headers=lord.headers).status == 404
    assert api.delete(f"/api/groups/{group_id}", headers=lord.headers).status == 404
    listed = api.get("/api/groups", headers=lord.headers)
    assert listed.json == []


# Members


def test_list_members_shows_public_profiles_with_identity_and_pages(api: Api) -> None:
    lord, admin, member = create_user(api), create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,), admins=(admin,))
    response = api.get(f"/api/groups/{group_id}/members", headers=member.headers)
    assert response.status == 200
    assert response.headers["x-total-count"] == "3"
    by_id = {m["id"]: m for m in response.json}
    assert {k: v["identity"] for k, v in by_id.items()} == {lord.id: "lord", admin.id: "admin", member.id: "user"}
    assert by_id[member.id]["username"] == member.username
    assert "password" not in by_id[member.id]
    assert "joined_at" in by_id[member.id]
    ids = [m["id"] for m in response.json]
    assert ids == sorted(ids)
    page = api.get(f"/api/groups/{group_id}/members?limit=1&offset=2", headers=lord.headers)
    assert [m["id"] for m in page.json] == ids[2:]
    assert page.headers["x-total-count"] == "3"


def test_list_members_is_for_members_only(api: Api) -> None:
    lord, stranger = create_user(api), create_user(api)
    group_id = create_group(api, lord)
    assert api.get(f"/api/groups/{group_id}/members", headers=stranger.headers).status == 403
    assert api.get(f"/api/groups/{UNKNOWN_ID}/members", headers=stranger.headers).status == 404
    assert api.get(f"/api/groups/{group_id}/members?limit=0", headers=lord.headers).status == 400


def test_lord_adds_a_friend_as_a_plain_member(api: Api) -> None:
    lord, friend = create_user(api), create_user(api)
    make_friends(api, lord, friend)
    group_id = create_group(api, lord)
    response = add_member(api, group_id, lord, friend)
    assert response.status == 201, response.text
    assert response.json["id"] == friend.id
    assert response.json["identity"] == "user"
    assert response.headers["location"] == f"/api/groups/{group_id}/members"
    assert api.get(f"/api/groups/{group_id}", headers=friend.headers).json["identity"] == "user"
    assert [g["id"] for g in api.get("/api/groups", headers=friend.headers).json] == [group_id]


@pytest.mark.parametrize(
    ("adder", "friend_of", "status"),
    [
        pytest.param("admin", "admin", 201, id="an admin adds a friend of their own"),
        pytest.param("admin", "lord", 403, id="the friendship is the adder's, not the lord's"),
        pytest.param("member", "member", 403, id="a plain member adding is forbidden"),
    ],
)
def test_the_adder_is_lord_or_admin_and_a_friend_of_the_one_added(
    api: Api, adder: str, friend_of: str, status: int
) -> None:
    lord, admin, member, newcomer = (create_user(api) for _ in range(4))
    group_id = create_group(api, lord, members=(member,), admins=(admin,))
    users = {"lord": lord, "admin": admin, "member": member}
    make_friends(api, users[friend_of], newcomer)
    assert add_member(api, group_id, users[adder], newcomer).status == status


def test_add_a_non_friend_is_forbidden(api: Api) -> None:
    lord, stranger = create_user(api), create_user(api)
    group_id = create_group(api, lord)
    response = add_member(api, group_id, lord, stranger)
    assert response.status == 403
    assert "friend" in response.json["message"]
    assert api.get(f"/api/groups/{group_id}", headers=stranger.headers).status == 403


def test_a_request_not_yet_agreed_or_an_ended_friendship_does_not_count(api: Api) -> None:
    lord, asked, former = create_user(api), create_user(api), create_user(api)
    group_id = create_group(api, lord)
    sent = request_friend(api, lord, asked.id, "hi")
    assert sent.status == 201
    assert add_member(api, group_id, lord, asked).status == 403
    make_friends(api, lord, former)
    assert api.delete(f"/api/friends/{former.id}", headers=lord.headers).status == 204
    assert add_member(api, group_id, lord, former).status == 403


def test_add_a_member_again_is_422(api: Api) -> None:
    lord, member = create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,))
    response = add_member(api, group_id, lord, member)
    assert response.status == 422
    assert response.json["message"] == "This user is already a member of the group"


def test_two_concurrent_adds_of_one_user_make_one_member(api: Api) -> None:
    lord, friend = create_user(api), create_user(api)
    make_friends(api, lord, friend)
    group_id = create_group(api, lord)
    request = ("POST", f"/api/groups/{group_id}/members", {"json": {"user_id": friend.id}, "headers": lord.headers})
    statuses = sorted(r.status_code for r in api.concurrently([request] * 4))
    assert statuses == [201, 422, 422, 422]
    assert api.get(f"/api/groups/{group_id}/members", headers=lord.headers).headers["x-total-count"] == "2"


def test_add_an_unknown_user_is_404(api: Api) -> None:
    lord = create_user(api)
    group_id = create_group(api, lord)
    response = api.post(f"/api/groups/{group_id}/members", json={"user_id": UNKNOWN_ID}, headers=lord.headers)
    assert response.status == 404
    assert response.json == {"message": "User not found"}


def test_add_to_a_group_of_others_or_unknown(api: Api) -> None:
    lord, stranger, friend = create_user(api), create_user(api), create_user(api)
    make_friends(api, stranger, friend)
    group_id = create_group(api, lord)
    assert add_member(api, group_id, stranger, friend).status == 403
    assert add_member(api, UNKNOWN_ID, stranger, friend).status == 404


@pytest.mark.parametrize(
    "body", [{}, {"user_id": "nope"}, {"user_id": 5}, {"user_id": UNKNOWN_ID, "identity": "admin"}]
)
def test_add_member_with_invalid_body_is_400(api: Api, body: dict[str, Any]) -> None:
    lord = create_user(api)
    group_id = create_group(api, lord)
    assert api.post(f"/api/groups/{group_id}/members", json=body, headers=lord.headers).status == 400


# Removing and leaving


@pytest.mark.parametrize(
    "by_lord", [pytest.param(False, id="a member leaves"), pytest.param(True, id="the lord removes admins and users")]
)
def test_members_leave_or_the_lord_removes_them(api: Api, by_lord: bool) -> None:
    lord, admin, member = create_user(api), create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,), admins=(admin,))
    for user in (admin, member) if by_lord else (member, admin):
        remover = lord if by_lord else user
        assert api.delete(f"/api/groups/{group_id}/members/{user.id}", headers=remover.headers).status == 204
    assert identities(api, group_id, lord) == {lord.id: "lord"}
    assert api.get(f"/api/groups/{group_id}", headers=member.headers).status == 403


def test_the_lord_cannot_leave(api: Api) -> None:
    lord = create_user(api)
    group_id = create_group(api, lord)
    response = api.delete(f"/api/groups/{group_id}/members/{lord.id}", headers=lord.headers)
    assert response.status == 422
    assert "delete" in response.json["message"]
    assert identities(api, group_id, lord) == {lord.id: "lord"}


def test_an_admin_removes_plain_users_only(api: Api) -> None:
    lord, admin, other_admin, member = create_user(api), create_user(api), create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,), admins=(admin, other_admin))
    assert api.delete(f"/api/groups/{group_id}/members/{other_admin.id}", headers=admin.headers).status == 403
    assert api.delete(f"/api/groups/{group_id}/members/{lord.id}", headers=admin.headers).status == 403
    assert api.delete(f"/api/groups/{group_id}/members/{member.id}", headers=admin.headers).status == 204
    assert set(identities(api, group_id, lord)) == {lord.id, admin.id, other_admin.id}


def test_a_plain_member_removing_another_is_forbidden(api: Api) -> None:
    lord, member, other = create_user(api), create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member, other))
    assert api.delete(f"/api/groups/{group_id}/members/{other.id}", headers=member.headers).status == 403
    assert other.id in identities(api, group_id, lord)


@pytest.mark.parametrize("who", ["unknown", "malformed", "stranger"])
def test_removing_a_non_member_is_404(api: Api, who: str) -> None:
    lord, stranger = create_user(api), create_user(api)
    group_id = create_group(api, lord)
    user_id = {"unknown": UNKNOWN_ID, "malformed": "xyz", "stranger": stranger.id}[who]
    assert api.delete(f"/api/groups/{group_id}/members/{user_id}", headers=lord.headers).status == 404


def test_leaving_a_group_you_are_not_in_is_403_and_an_unknown_group_404(api: Api) -> None:
    lord, stranger = create_user(api), create_user(api)
    group_id = create_group(api, lord)
    assert api.delete(f"/api/groups/{group_id}/members/{stranger.id}", headers=stranger.headers).status == 403
    assert api.delete(f"/api/groups/{UNKNOWN_ID}/members/{stranger.id}", headers=stranger.headers).status == 404


# Identities


def test_the_lord_promotes_and_demotes(api: Api) -> None:
    lord, member = create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,))
    path = f"/api/groups/{group_id}/members/{member.id}"
    assert api.put(path, json={"identity": "admin"}, headers=lord.headers).status == 204
    assert identities(api, group_id, lord)[member.id] == "admin"
    assert api.put(path, json={"identity": "user"}, headers=lord.headers).status == 204
    assert identities(api, group_id, lord)[member.id] == "user"


def test_the_lords_own_identity_cannot_change(api: Api) -> None:
    lord = create_user(api)
    group_id = create_group(api, lord)
    response = api.put(f"/api/groups/{group_id}/members/{lord.id}", json={"identity": "user"}, headers=lord.headers)
    assert response.status == 422
    assert identities(api, group_id, lord) == {lord.id: "lord"}


def test_only_the_lord_changes_identities(api: Api) -> None:
    lord, admin, member = create_user(api), create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,), admins=(admin,))
    path = f"/api/groups/{group_id}/members/{member.id}"
    assert api.put(path, json={"identity": "admin"}, headers=admin.headers).status == 403
    assert api.put(path, json={"identity": "admin"}, headers=member.headers).status == 403
    assert identities(api, group_id, lord)[member.id] == "user"


def test_changing_the_identity_of_a_non_member_is_404(api: Api) -> None:
    lord, stranger = create_user(api), create_user(api)
    group_id = create_group(api, lord)
    for user_id in (stranger.id, UNKNOWN_ID, "xyz"):
        response = api.put(
            f"/api/groups/{group_id}/members/{user_id}", json={"identity": "admin"}, headers=lord.headers
        )
        assert response.status == 404
    response = api.put(
        f"/api/groups/{UNKNOWN_ID}/members/{stranger.id}", json={"identity": "admin"}, headers=lord.headers
    )
    assert response.status == 404


@pytest.mark.parametrize("body", [{}, {"identity": "lord"}, {"identity": "boss"}, {"identity": "admin", "x": 1}])
def test_changing_identity_with_invalid_body_is_400(api: Api, body: dict[str, Any]) -> None:
    lord, member = create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,))
    assert api.put(f"/api/groups/{group_id}/members/{member.id}", json=body, headers=lord.headers).status == 400


@pytest.mark.parametrize(
    ("query", "sort"),
    [
        ({"user_id": {"$eq": UNKNOWN_ID}}, "group_id"),  # my groups, and their count
        ({"group_id": {"$eq": UNKNOWN_ID}}, "user_id"),  # a group's members, and their count
        ({"group_id": {"$eq": UNKNOWN_ID}, "user_id": {"$eq": UNKNOWN_ID}}, None),  # one membership
    ],
)
def test_membership_queries_are_served_by_an_index(
    api: Api, sync_db: Database[dict[str, Any]], query: dict[str, Any], sort: str | None
) -> None:
    """The app created the indexes when it started (the `api` fixture starts it)."""
    cursor = sync_db.group_members.find(query)
    if sort is not None:
        cursor = cursor.sort(sort, 1)
    plan = json.dumps(cursor.explain(), default=str)
    # nx-27017 answers with SQLite's plan, MongoDB with its own
    assert "USING INDEX" in plan or "IXSCAN" in plan, plan


def test_openapi_operation_ids_are_unique(other_app: OtherApp) -> None:
    """Handlers are documented under their function's name: a group route once shared `send_message`
    with the direct messages' route. (An app of its own: sanic-ext documents the app started last.)"""
    with other_app() as client:
        _, response = client.get("/docs/openapi.json")
    document = response.json
    ids = [op["operationId"] for path in document["paths"].values() for op in path.values() if "operationId" in op]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert {"send_group_message", "list_group_messages"} <= set(ids)
