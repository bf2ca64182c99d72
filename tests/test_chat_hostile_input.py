"""Hostile input on the chat routes: query operators where values belong, mass assignment, forged paths.

Each test first builds what an attack would need to succeed (two friends, a group with both in
it, a waiting request), so that an operator reaching the store, or a field the client may not
set, would show as a success or as changed data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from pymongo.database import Database

from tests.factories import TestUser, create_group, create_user, request_friend
from tests.helpers import Api

OPERATORS: list[Any] = [
    {"$ne": None},
    {"$gt": ""},
    {"$regex": ".*"},
    {"$where": "return true"},
    {"$in": ["a"]},
    ["a", "b"],
]
OPERATOR_IDS = [json.dumps(value) for value in OPERATORS]


@dataclass
class Scene:
    lord: TestUser
    member: TestUser
    stranger: TestUser
    group_id: str
    request_id: str


@pytest.fixture
def scene(api: Api) -> Scene:
    lord, member, stranger, asker = (create_user(api) for _ in range(4))
    group_id = create_group(api, lord, members=(member,), group_name="hostile")
    request = request_friend(api, asker, stranger.id, "hi")
    assert request.status == 201, request.text
    stranger.extra["asker"] = asker
    return Scene(lord, member, stranger, group_id, request.json["user_request_id"])


def write_routes(scene: Scene) -> list[tuple[str, str, TestUser, dict[str, Any]]]:
    """(method, path, caller, a valid body): every chat route that takes a JSON body."""
    group = f"/api/groups/{scene.group_id}"
    return [
        ("post", "/api/user-requests", scene.lord, {"to_id": scene.stranger.id, "verify_data": "hello"}),
        ("put", f"/api/user-requests/{scene.request_id}", scene.stranger, {"status": "agree"}),
        ("post", "/api/user-message", scene.lord, {"to_id": scene.member.id, "msg": "hi", "msg_type": "txt"}),
        ("post", "/api/groups", scene.lord, {"group_name": "another"}),
        ("put", group, scene.lord, {"group_desc": "changed"}),
        ("post", f"{group}/messages", scene.member, {"msg": "hi", "msg_type": "txt"}),
        ("put", f"{group}/members/{scene.member.id}", scene.lord, {"identity": "admin"}),
    ]


ROUTE_NAMES = [
    "POST user-requests",
    "PUT user-requests/<id>",
    "POST user-message",
    "POST groups",
    "PUT groups/<id>",
    "POST groups/<id>/messages",
    "PUT groups/<id>/members/<id>",
]


def assert_valid_body_succeeds(api: Api, method: str, path: str, caller: TestUser, body: dict[str, Any]) -> None:
    """The same request without the attack works: the 400s above were the attack's doing."""
    response = api.request(method, path, json=body, headers=caller.headers)
    assert 200 <= response.status < 300, response.text


def snapshot(sync_db: Database[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    names = ["user_requests", "friendships", "user_messages", "groups", "group_members", "group_messages"]
    return {name: list(sync_db[name].find({}, sort=[("_id", 1)])) for name in names}


@pytest.mark.parametrize("operator", OPERATORS, ids=OPERATOR_IDS)
@pytest.mark.parametrize("route", range(len(ROUTE_NAMES)), ids=ROUTE_NAMES)
def test_an_operator_for_any_field_of_a_chat_body_is_400_and_changes_nothing(
    api: Api, sync_db: Database[dict[str, Any]], scene: Scene, route: int, operator: Any
) -> None:
    method, path, caller, body = write_routes(scene)[route]
    before = snapshot(sync_db)
    for field in body:
        response = api.request(method, path, json={**body, field: operator}, headers=caller.headers)
        assert response.status == 400, (field, response.text)
        assert response.json["message"]
    assert snapshot(sync_db) == before
    assert_valid_body_succeeds(api, method, path, caller, body)


MASS_ASSIGNMENT: dict[str, dict[str, Any]] = {
    "POST user-requests": {"from_id": "0" * 24, "status": "agree"},
    "PUT user-requests/<id>": {"to_id": "0" * 24, "from_id": "0" * 24},
    "POST user-message": {"from_id": "0" * 24, "_id": "0" * 24, "seq": 1},
    "POST groups": {"lord_id": "0" * 24, "_id": "0" * 24},
    "PUT groups/<id>": {"lord_id": "0" * 24, "last_message": {}},
    "POST groups/<id>/messages": {"from_id": "0" * 24, "group_id": "0" * 24},
    "PUT groups/<id>/members/<id>": {"group_id": "0" * 24, "user_id": "0" * 24},
}


@pytest.mark.parametrize("route", range(len(ROUTE_NAMES)), ids=ROUTE_NAMES)
def test_fields_a_client_may_not_set_are_refused(
    api: Api, sync_db: Database[dict[str, Any]], scene: Scene, route: int
) -> None:
    method, path, caller, body = write_routes(scene)[route]
    before = snapshot(sync_db)
    for field, value in MASS_ASSIGNMENT[ROUTE_NAMES[route]].items():
        response = api.request(method, path, json={**body, field: value}, headers=caller.headers)
        assert response.status == 400, (field, response.text)
        assert field in [error["field"] for error in response.json["errors"]]
    assert snapshot(sync_db) == before
    assert_valid_body_succeeds(api, method, path, caller, body)


def test_a_lord_cannot_be_made_by_an_identity_change(api: Api, scene: Scene) -> None:
    path = f"/api/groups/{scene.group_id}/members/{scene.member.id}"
    response = api.put(path, json={"identity": "lord"}, headers=scene.lord.headers)
    assert response.status == 400


FORGED_IDS = ['{"$ne":null}', "[$ne]=1", "000000000000000000000000' || '1'=='1", "a" * 25, "ObjectId()"]


@pytest.mark.parametrize("forged", FORGED_IDS)
def test_an_operator_or_junk_in_a_chat_path_id_is_404(api: Api, scene: Scene, forged: str) -> None:
    value = quote(forged, safe="")
    for path in [
        f"/api/groups/{value}",
        f"/api/groups/{value}/members",
        f"/api/groups/{value}/messages",
        f"/api/user-message/{scene.lord.id}/{value}",
        f"/api/files/{value}",
    ]:
        response = api.get(path, headers=scene.lord.headers)
        assert response.status in (400, 404), (path, response.status, response.text)
    response = api.delete(f"/api/friends/{value}", headers=scene.lord.headers)
    assert response.status in (400, 404)
    response = api.put(f"/api/user-requests/{value}", json={"status": "agree"}, headers=scene.stranger.headers)
    assert response.status in (400, 404)
    # Issue 13: blocks and mutes, both methods each; nothing is written.
    for method, path in [
        ("put", f"/api/blocks/{value}"),
        ("delete", f"/api/blocks/{value}"),
        ("put", f"/api/conversations/user/{value}/mute"),
        ("delete", f"/api/conversations/user/{value}/mute"),
        ("put", f"/api/conversations/group/{value}/mute"),
        ("delete", f"/api/conversations/group/{value}/mute"),
    ]:
        response = api.request(method, path, headers=scene.lord.headers)
        assert response.status in (400, 404), (method, path, response.status, response.text)
    assert api.get("/api/blocks", headers=scene.lord.headers).json == []
