"""GET/PUT/DELETE under /api/users: listing, showing, changing and deleting users."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.database import Database

from tests.factories import TestUser, create_user, log_in, new_password
from tests.helpers import Api, assert_error

PUBLIC_FIELDS = {
    "id", "chat_id", "email", "username", "personality", "avatar",
    "register_at", "sex", "birthday", "phone", "flag",
}  # fmt: skip


def test_list_users_pages_in_creation_order_with_total(api: Api) -> None:
    users = [create_user(api, login=False) for _ in range(5)]
    me = create_user(api)
    response = api.get("/api/users?limit=2&offset=1", headers=me.headers)
    assert response.status == 200
    assert response.headers["x-total-count"] == "6"
    assert [u["id"] for u in response.json] == [users[1].id, users[2].id]
    everyone = api.get("/api/users", headers=me.headers).json
    assert [u["id"] for u in everyone] == [u.id for u in users] + [me.id]
    assert all(set(u) == PUBLIC_FIELDS for u in everyone)


def test_list_users_default_limit_is_50(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    me = create_user(api)
    template = sync_db.users.find_one({"chat_id": me.chat_id}, {"_id": 0})
    assert template is not None
    sync_db.users.insert_many(
        [{**template, "chat_id": me.chat_id + i, "email": f"bulk{i}@example.com"} for i in range(1, 60)]
    )
    response = api.get("/api/users", headers=me.headers)
    assert len(response.json) == 50
    assert response.headers["x-total-count"] == "60"
    assert len(api.get("/api/users?limit=200", headers=me.headers).json) == 60


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=201", "limit=abc", "offset=-1", "limit=1.5", "offset=x", "limit=5%0A"]
)
def test_list_users_bad_paging_is_400(api: Api, query: str) -> None:
    me = create_user(api)
    response = api.get(f"/api/users?{query}", headers=me.headers)
    assert response.status == 400
    assert response.json["errors"][0]["field"].startswith("query.")


def test_list_users_with_an_unknown_query_parameter_is_400(api: Api) -> None:
    me = create_user(api)
    response = api.get("/api/users?limt=10", headers=me.headers)
    assert response.status == 400
    assert [error["field"] for error in response.json["errors"]] == ["query.limt"]


def test_list_users_requires_token(api: Api) -> None:
    assert api.get("/api/users").status == 401


def test_get_user_shows_public_fields(api: Api) -> None:
    other = create_user(api, login=False, username="Alice")
    me = create_user(api)
    response = api.get(f"/api/users/{other.id}", headers=me.headers)
    assert response.status == 200
    assert set(response.json) == PUBLIC_FIELDS
    assert response.json["username"] == "Alice"
    assert response.json["id"] == other.id


@pytest.mark.parametrize("user_id", ["0123456789abcdef01234567", "not-an-id", "abcdefghijkl", "1"])
def test_get_unknown_or_malformed_user_is_404(api: Api, user_id: str) -> None:
    me = create_user(api)
    assert_error(api.get(f"/api/users/{user_id}", headers=me.headers), 404, "User not found")


def test_update_own_user_changes_only_given_fields(api: Api) -> None:
    me = create_user(api, personality="before")
    response = api.put(
        f"/api/users/{me.id}",
        json={"username": "New Name", "sex": "man", "phone": "+8613800138000", "avatar": "/a.png"},
        headers=me.headers,
    )
    assert response.status == 204
    assert response.body == b""
    shown = api.get(f"/api/users/{me.id}", headers=me.headers).json
    assert (shown["username"], shown["sex"], shown["phone"], shown["avatar"]) == (
        "New Name", "man", "+8613800138000", "/a.png",
    )  # fmt: skip
    assert shown["personality"] == "before"


def test_update_can_clear_optional_fields(api: Api) -> None:
    me = create_user(api, personality="something")
    assert api.put(f"/api/users/{me.id}", json={"personality": None}, headers=me.headers).status == 204
    assert api.get("/api/getUser", headers=me.headers).json["personality"] is None


def test_update_dates_are_stored_in_utc(api: Api) -> None:
    me = create_user(api)
    body = {"birthday": "1990-05-01T08:00:00+08:00", "register_at": "2020-01-02T03:04:05.678901"}
    assert api.put(f"/api/users/{me.id}", json=body, headers=me.headers).status == 204
    shown = api.get("/api/getUser", headers=me.headers).json
    assert shown["birthday"] == "1990-05-01T00:00:00Z"
    assert shown["register_at"] == "2020-01-02T03:04:05.678000Z"


def test_update_password_is_hashed_again(api: Api) -> None:
    me = create_user(api)
    password = new_password()
    api.passwords.add(password)
    assert api.put(f"/api/users/{me.id}", json={"password": password}, headers=me.headers).status == 204
    assert api.post("/api/login", json={"chat_id": me.chat_id, "password": me.password}).status == 422
    log_in(api, me.chat_id, password)


def test_update_email_is_normalised_and_unique(api: Api) -> None:
    other = create_user(api, login=False)
    me = create_user(api)
    taken = api.put(f"/api/users/{me.id}", json={"email": other.email.upper()}, headers=me.headers)
    assert taken.status == 422
    assert taken.json["errors"][0]["field"] == "email"
    assert api.put(f"/api/users/{me.id}", json={"email": " New@Example.com"}, headers=me.headers).status == 204
    assert api.get("/api/getUser", headers=me.headers).json["email"] == "new@example.com"


def test_update_own_email_to_itself_is_fine(api: Api) -> None:
    me = create_user(api)
    assert api.put(f"/api/users/{me.id}", json={"email": me.email}, headers=me.headers).status == 204


def test_own_id_in_upper_case_is_still_your_own(api: Api) -> None:
    me = create_user(api)
    assert api.get(f"/api/users/{me.id.upper()}", headers=me.headers).json["id"] == me.id
    assert api.put(f"/api/users/{me.id.upper()}", json={"sex": "man"}, headers=me.headers).status == 204
    assert api.delete(f"/api/users/{me.id.upper()}", headers=me.headers).status == 200


def test_update_dates_out_of_range_in_utc_are_400(api: Api) -> None:
    me = create_user(api)
    response = api.put(f"/api/users/{me.id}", json={"register_at": "0001-01-01T00:30:00+01:00"}, headers=me.headers)
    assert response.status == 400
    assert response.json["errors"][0]["field"] == "register_at"


def test_update_user_of_other_is_forbidden(api: Api) -> None:
    other = create_user(api, login=False, username="Bob")
    me = create_user(api)
    response = api.put(f"/api/users/{other.id}", json={"username": "hacked"}, headers=me.headers)
    assert response.status == 403
    assert response.json == {"message": "You can only change your own account"}
    assert api.get(f"/api/users/{other.id}", headers=me.headers).json["username"] == "Bob"


def test_update_unknown_user_is_404(api: Api) -> None:
    me = create_user(api)
    assert api.put("/api/users/0123456789abcdef01234567", json={}, headers=me.headers).status == 404
    assert api.put("/api/users/nope", json={}, headers=me.headers).status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"chat_id": 5}, "chat_id"),  # not changeable
        ({"flag": "online"}, "flag"),
        ({"token_version": 0}, "token_version"),
        ({"_id": "0123456789abcdef01234567"}, "_id"),
        ({"id": "0123456789abcdef01234567"}, "id"),
        ({"username": None}, "username"),
        ({"email": None}, "email"),
        ({"email": {"$ne": None}}, "email"),
        ({"password": "123"}, "password"),
        ({"sex": "x"}, "sex"),
        ({"username": ""}, "username"),
    ],
)
def test_update_with_unknown_or_invalid_field_is_400(api: Api, body: dict[str, Any], field: str) -> None:
    me = create_user(api)
    response = api.put(f"/api/users/{me.id}", json=body, headers=me.headers)
    assert response.status == 400
    assert field in [error["field"] for error in response.json["errors"]]


def test_update_requires_token_before_validation(api: Api) -> None:
    me = create_user(api)
    assert api.put(f"/api/users/{me.id}", json={"bogus": 1}).status == 401


def test_delete_own_user(api: Api) -> None:
    me = create_user(api)
    witness = create_user(api)
    response = api.delete(f"/api/users/{me.id}", headers=me.headers)
    assert response.status == 200
    assert response.json == {"message": "User deleted"}
    assert api.get(f"/api/users/{me.id}", headers=witness.headers).status == 404
    # the token of a deleted account is worthless
    assert api.get("/api/getUser", headers=me.headers).status == 401


def test_delete_user_of_other_is_forbidden(api: Api) -> None:
    other = create_user(api, login=False)
    me = create_user(api)
    response = api.delete(f"/api/users/{other.id}", headers=me.headers)
    assert response.status == 403
    assert response.json == {"message": "You can only delete your own account"}
    assert api.get(f"/api/users/{other.id}", headers=me.headers).status == 200


def test_delete_unknown_user_is_404(api: Api) -> None:
    me = create_user(api)
    assert api.delete("/api/users/0123456789abcdef01234567", headers=me.headers).status == 404


def test_users_routes_accept_trailing_slash(api: Api) -> None:
    me: TestUser = create_user(api)
    assert api.get("/api/users/", headers=me.headers).status == 200
