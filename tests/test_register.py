"""POST /api/register and POST /api/users: creation, validation, uniqueness."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import create_user, new_password, user_payload
from tests.helpers import Api


def test_register_returns_201_with_id_and_location(api: Api) -> None:
    payload = user_payload(api)
    response = api.post("/api/register", json=payload)
    assert response.status == 201
    user_id = response.json["user_id"]
    assert response.headers["location"] == f"/api/users/{user_id}"
    assert set(response.json) == {"user_id"}


def test_register_accepts_chat_id_as_digit_string_like_the_frontend(api: Api) -> None:
    payload = user_payload(api)
    payload["chat_id"] = str(payload["chat_id"])
    response = api.post("/api/register", json=payload)
    assert response.status == 201
    user = create_user(api)
    shown = api.get(f"/api/users/{response.json['user_id']}", headers=user.headers).json
    assert shown["chat_id"] == int(payload["chat_id"])


def test_registered_user_has_documented_defaults(api: Api) -> None:
    user = create_user(api, email="  Mixed.Case@Example.COM ")
    shown = api.get("/api/getUser", headers=user.headers).json
    assert shown["email"] == "mixed.case@example.com"
    assert shown["sex"] == "unknown"
    assert shown["flag"] == "online"  # logged in by the helper
    assert shown["birthday"] == shown["register_at"]
    assert shown["register_at"].endswith("Z")
    assert shown["personality"] is None
    assert shown["avatar"] is None
    assert shown["phone"] is None
    assert "password" not in shown
    assert "token_version" not in shown


def test_register_accepts_optional_fields_and_integer_phone(api: Api) -> None:
    user = create_user(api, sex="female", phone=8613800138000, personality="hi", birthday="1990-05-01")
    shown = api.get("/api/getUser", headers=user.headers).json
    assert shown["phone"] == "8613800138000"
    assert shown["sex"] == "female"
    assert shown["personality"] == "hi"
    assert shown["birthday"].startswith("1990-05-01T00:00:00")


@pytest.mark.parametrize("field", ["email", "chat_id"])
def test_register_taken_value_is_422_naming_the_field(api: Api, field: str) -> None:
    first = create_user(api, login=False)
    value: Any = first.email.upper() if field == "email" else str(first.chat_id)
    response = api.post("/api/register", json=user_payload(api, **{field: value}))
    assert response.status == 422
    assert field in response.json["message"]
    assert response.json["errors"][0]["field"] == field


@pytest.mark.parametrize(
    ("change", "bad_field"),
    [
        ({"username": None}, "username"),
        ({"email": "not-an-email"}, "email"),
        ({"password": "short"}, "password"),
        ({"password": "é" * 37}, "password"),  # 74 bytes: over bcrypt's 72
        ({"chat_id": "1_000"}, "chat_id"),
        ({"chat_id": " 123 "}, "chat_id"),
        ({"chat_id": "12.0"}, "chat_id"),
        ({"chat_id": 12.5}, "chat_id"),
        ({"chat_id": True}, "chat_id"),
        ({"chat_id": 0}, "chat_id"),
        ({"chat_id": -5}, "chat_id"),
        ({"chat_id": 10**30}, "chat_id"),
        ({"chat_id": {"$gt": 0}}, "chat_id"),
        ({"email": {"$ne": None}}, "email"),
        ({"sex": "robot"}, "sex"),
        ({"phone": "12ab"}, "phone"),
        ({"birthday": "yesterday"}, "birthday"),
        ({"birthday": "0001-01-01T00:00:00+01:00"}, "birthday"),  # before year 1 in UTC
        ({"register_at": "9999-12-31T23:59:59-01:00"}, "register_at"),  # after 9999 in UTC
        ({"chat_id": "777\n"}, "chat_id"),
        ({"flag": "online"}, "flag"),
        ({"is_admin": True}, "is_admin"),
    ],
)
def test_register_invalid_input_is_400_naming_the_field(api: Api, change: dict[str, Any], bad_field: str) -> None:
    payload = user_payload(api)
    payload.update(change)
    payload = {k: v for k, v in payload.items() if v is not None}
    response = api.post("/api/register", json=payload)
    assert response.status == 400, response.text
    assert response.json["message"]
    assert bad_field in [error["field"] for error in response.json["errors"]]


def test_validation_error_does_not_echo_the_password(api: Api) -> None:
    password = new_password()
    api.passwords.add(password)
    response = api.post("/api/register", json={"password": password, "email": "x@example.com"})
    assert response.status == 400
    assert password not in response.text
    assert {"username", "chat_id"} <= {error["field"] for error in response.json["errors"]}


def test_twenty_concurrent_registrations_of_one_email_give_one_201(api: Api) -> None:
    email = "race@example.com"
    requests = [("POST", "/api/register", {"json": user_payload(api, email=email)}) for _ in range(20)]
    statuses = sorted(response.status_code for response in api.concurrently(requests))
    assert statuses == [201] + [422] * 19


def test_twenty_concurrent_registrations_of_one_chat_id_give_one_201(api: Api) -> None:
    chat_id = user_payload()["chat_id"]
    requests = [("POST", "/api/register", {"json": user_payload(api, chat_id=chat_id)}) for _ in range(20)]
    statuses = sorted(response.status_code for response in api.concurrently(requests))
    assert statuses == [201] + [422] * 19


def test_create_user_route_requires_a_token(api: Api) -> None:
    response = api.post("/api/users", json=user_payload(api))
    assert response.status == 401
    assert response.json == {"message": "Authorization not found!"}


def test_create_user_route_without_token_is_401_even_with_bad_body(api: Api) -> None:
    assert api.post("/api/users", json={"nonsense": 1}).status == 401


def test_create_user_route_with_token_creates(api: Api) -> None:
    admin = create_user(api)
    payload = user_payload(api)
    response = api.post("/api/users", json=payload, headers=admin.headers)
    assert response.status == 201
    location = response.headers["location"]
    shown = api.get(location, headers=admin.headers)
    assert shown.status == 200
    assert shown.json["chat_id"] == payload["chat_id"]
    assert api.post("/api/users", json=payload, headers=admin.headers).status == 422
