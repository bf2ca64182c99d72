"""Hostile input: query operators where values belong, forged tokens, and mass assignment.

Each test first creates the data an attack would need to succeed (an account to log into, an
email that is taken), so that an operator reaching the store would show as a 200 or a 422.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import quote

import jwt
import pytest
from pymongo.database import Database

from chat_api.config import Settings
from chat_api.security import create_token
from tests.factories import auth_headers, create_user, user_payload
from tests.helpers import Api

OPERATORS: list[Any] = [
    {"$ne": None},
    {"$ne": ""},
    {"$gt": 0},
    {"$gt": ""},
    {"$regex": ".*"},
    {"$where": "return true"},
    {"$exists": True},
    {"$in": [1, "a"]},
    ["a", "b"],
]
REGISTER_FIELDS = [
    "username", "password", "email", "chat_id", "personality", "avatar", "sex", "birthday", "phone", "register_at",
]  # fmt: skip
UPDATE_FIELDS = ["personality", "avatar", "register_at", "username", "password", "sex", "birthday", "phone", "email"]


def _ids(values: list[Any]) -> list[str]:
    return [json.dumps(value) for value in values]


@pytest.mark.parametrize("operator", OPERATORS, ids=_ids(OPERATORS))
@pytest.mark.parametrize("field", ["chat_id", "password"])
def test_login_with_an_operator_for_a_value_is_400(api: Api, field: str, operator: Any) -> None:
    victim = create_user(api, login=False)
    body: dict[str, Any] = {"chat_id": victim.chat_id, "password": victim.password, field: operator}
    response = api.post("/api/login", json=body)
    assert response.status == 400
    assert "token" not in response.json
    assert [error["field"] for error in response.json["errors"]] == [field]


@pytest.mark.parametrize(
    "extra",
    [{"$where": "return true"}, {"email": {"$ne": None}}, {"$or": [{"chat_id": {"$gt": 0}}]}],
    ids=["$where", "email", "$or"],
)
def test_login_with_operator_keys_beside_the_fields_is_400(api: Api, extra: dict[str, Any]) -> None:
    victim = create_user(api, login=False)
    response = api.post("/api/login", json={"chat_id": victim.chat_id, "password": victim.password + "x", **extra})
    assert response.status == 400
    assert "token" not in response.json


@pytest.mark.parametrize("field", REGISTER_FIELDS)
def test_register_with_an_operator_for_any_field_is_400_and_creates_nothing(
    api: Api, sync_db: Database[dict[str, Any]], field: str
) -> None:
    create_user(api, login=False)
    payload = user_payload(api, **{field: {"$ne": None}})
    response = api.post("/api/register", json=payload)
    assert response.status == 400
    assert field in [error["field"] for error in response.json["errors"]]
    assert sync_db.users.count_documents({}) == 1


def test_register_with_a_where_clause_is_400(api: Api) -> None:
    response = api.post("/api/register", json={**user_payload(api), "$where": "sleep(1000)"})
    assert response.status == 400
    assert "$where" in [error["field"] for error in response.json["errors"]]


@pytest.mark.parametrize("value", ['{"$ne":null}', '{"$gt":""}', '{"$regex":".*"}', '{"$where":"1"}', "[$ne]=1", "$ne"])
@pytest.mark.parametrize("check", ["checkEmail", "checkChatId"])
def test_availability_check_with_an_operator_in_the_path_is_400(api: Api, check: str, value: str) -> None:
    create_user(api, login=False)  # an operator that reached the store would answer 422 "taken"
    response = api.get(f"/api/users/{check}/{quote(value, safe='')}")
    assert response.status == 400, response.text
    assert response.json["errors"][0]["field"] in {"email", "chat_id"}


def test_user_id_that_is_an_operator_is_not_found(api: Api) -> None:
    me = create_user(api)
    for value in ('{"$ne":null}', '{"$gt":""}', "[$ne]"):
        response = api.get(f"/api/users/{quote(value, safe='')}", headers=me.headers)
        assert response.status == 404
        assert response.json == {"message": "User not found"}


@pytest.mark.parametrize("operator", [{"$ne": None}, {"$set": {"chat_id": 1}}], ids=["$ne", "$set"])
@pytest.mark.parametrize("field", UPDATE_FIELDS)
def test_update_with_an_operator_for_any_field_is_400_and_changes_nothing(
    api: Api, sync_db: Database[dict[str, Any]], field: str, operator: Any
) -> None:
    me = create_user(api)
    before = sync_db.users.find_one({"chat_id": me.chat_id})
    response = api.put(f"/api/users/{me.id}", json={field: operator}, headers=me.headers)
    assert response.status == 400
    assert [error["field"] for error in response.json["errors"]] == [field]
    assert sync_db.users.find_one({"chat_id": me.chat_id}) == before


@pytest.mark.parametrize(
    "body",
    [{"$set": {"chat_id": 1}}, {"$inc": {"token_version": -1}}, {"$unset": {"password": ""}}, {"$where": "1"}],
    ids=["$set", "$inc", "$unset", "$where"],
)
def test_update_operators_as_keys_are_400_and_change_nothing(
    api: Api, sync_db: Database[dict[str, Any]], body: dict[str, Any]
) -> None:
    me = create_user(api)
    before = sync_db.users.find_one({"chat_id": me.chat_id})
    response = api.put(f"/api/users/{me.id}", json=body, headers=me.headers)
    assert response.status == 400
    assert sync_db.users.find_one({"chat_id": me.chat_id}) == before


# Mass assignment: fields the API sets itself, under the names a client might try.
SERVER_FIELDS = [
    "id", "_id", "user_id", "flag", "token_version", "password_hash", "hashed_password", "created_at",
    "updated_at", "is_admin", "role",
]  # fmt: skip


@pytest.mark.parametrize("field", [*SERVER_FIELDS, "chat_id"])
def test_update_of_a_field_the_client_may_not_set_is_400_and_changes_nothing(
    api: Api, sync_db: Database[dict[str, Any]], field: str
) -> None:
    me = create_user(api)
    before = sync_db.users.find_one({"chat_id": me.chat_id})
    value: Any = "0123456789abcdef01234567" if "id" in field else 0
    response = api.put(f"/api/users/{me.id}", json={field: value, "personality": "changed"}, headers=me.headers)
    assert response.status == 400
    assert [error["field"] for error in response.json["errors"]] == [field]
    assert sync_db.users.find_one({"chat_id": me.chat_id}) == before


@pytest.mark.parametrize("field", SERVER_FIELDS)
def test_register_with_a_field_the_client_may_not_set_is_400_and_creates_nothing(
    api: Api, sync_db: Database[dict[str, Any]], field: str
) -> None:
    value: Any = "0123456789abcdef01234567" if "id" in field else 0
    response = api.post("/api/register", json={**user_payload(api), field: value})
    assert response.status == 400
    assert [error["field"] for error in response.json["errors"]] == [field]
    assert sync_db.users.count_documents({}) == 0


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _forged_tokens(settings: Settings, victim_id: str, attacker_id: str) -> dict[str, str]:
    """Tokens naming the victim as subject that the server must refuse."""
    now = int(time.time())
    claims = {"sub": victim_id, "iat": now, "exp": now + 3600, "ver": 0}
    unsigned = _b64(claims)
    header, _, signature = create_token(attacker_id, 0, settings.jwt_secret, 3600).split(".")
    return {
        "victim signed with another secret": jwt.encode(claims, "an-attacker-secret-" + "x" * 32, algorithm="HS256"),
        "victim with alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{unsigned}.",
        "victim with alg None": f"{_b64({'alg': 'None', 'typ': 'JWT'})}.{unsigned}.",
        "victim with alg NONE": f"{_b64({'alg': 'NONE', 'typ': 'JWT'})}.{unsigned}.",
        "victim with HS256 and no signature": f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{unsigned}.",
        "victim's claims under the attacker's valid signature": f"{header}.{unsigned}.{signature}",
        "no subject": jwt.encode({"iat": now, "exp": now + 3600, "ver": 0}, settings.jwt_secret),
        "no issued-at": jwt.encode({"sub": victim_id, "exp": now + 3600, "ver": 0}, settings.jwt_secret),
        "version as a string": jwt.encode({**claims, "ver": "0"}, settings.jwt_secret),
        "version as a boolean": jwt.encode({**claims, "ver": False}, settings.jwt_secret),
        "subject as a number": jwt.encode({**claims, "sub": 12345}, settings.jwt_secret),
    }


FORGED = [
    "victim signed with another secret", "victim with alg none", "victim with alg None", "victim with alg NONE",
    "victim with HS256 and no signature", "victim's claims under the attacker's valid signature", "no subject",
    "no issued-at", "version as a string", "version as a boolean", "subject as a number",
]  # fmt: skip


@pytest.mark.parametrize("kind", FORGED)
def test_forged_token_for_another_user_is_401_on_every_protected_route(api: Api, settings: Settings, kind: str) -> None:
    victim = create_user(api)
    attacker = create_user(api)
    token = _forged_tokens(settings, victim.id, attacker.id)[kind]
    headers = auth_headers(f"Bearer {token}")
    responses = [
        api.get("/api/getUser", headers=headers),
        api.get("/api/users", headers=headers),
        api.get(f"/api/users/{attacker.id}", headers=headers),
        api.put(f"/api/users/{victim.id}", json={"personality": "pwned"}, headers=headers),
        api.delete(f"/api/users/{victim.id}", headers=headers),
        api.post("/api/logout", headers=headers),
    ]
    assert [response.status for response in responses] == [401] * len(responses)
    # The victim's account and session are untouched.
    shown = api.get("/api/getUser", headers=victim.headers)
    assert shown.status == 200
    assert shown.json["personality"] is None


def test_token_issued_before_logout_cannot_change_the_account(api: Api) -> None:
    me = create_user(api)
    old = me.token
    assert api.post("/api/logout", headers=me.headers).status == 204
    assert api.put(f"/api/users/{me.id}", json={"personality": "late"}, headers=auth_headers(old)).status == 401
    assert api.delete(f"/api/users/{me.id}", headers=auth_headers(old)).status == 401
