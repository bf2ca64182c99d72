"""Login, tokens, the current user and logout."""

from __future__ import annotations

import os
import threading
import time

import jwt
import pytest

from chat_api.config import Settings
from chat_api.http.types import ChatApp
from chat_api.security import HASHING_NICENESS, create_token
from tests.factories import auth_headers, create_user, log_in
from tests.helpers import Api


def test_login_by_chat_id_answers_bearer_token(api: Api) -> None:
    user = create_user(api, login=False)
    response = api.post("/api/login", json={"chat_id": user.chat_id, "password": user.password})
    assert response.status == 200
    assert set(response.json) == {"token"}
    assert response.json["token"].startswith("Bearer ")


def test_login_accepts_chat_id_as_string_and_email_in_the_chat_id_field(api: Api) -> None:
    user = create_user(api, login=False)
    log_in(api, str(user.chat_id), user.password)
    log_in(api, user.email, user.password)
    log_in(api, f"  {user.email.upper()} ", user.password)


def test_login_marks_user_online(api: Api) -> None:
    user = create_user(api, login=False)
    witness = create_user(api)
    assert api.get(f"/api/users/{user.id}", headers=witness.headers).json["flag"] == "offline"
    log_in(api, user.chat_id, user.password)
    assert api.get(f"/api/users/{user.id}", headers=witness.headers).json["flag"] == "online"


@pytest.mark.parametrize("identifier", [987654321987, "nobody@example.com"])
def test_login_unknown_account_is_404(api: Api, identifier: int | str) -> None:
    response = api.post("/api/login", json={"chat_id": identifier, "password": "whatever1"})
    assert response.status == 404
    assert response.json["message"]


def test_login_wrong_password_is_422(api: Api) -> None:
    user = create_user(api, login=False)
    response = api.post("/api/login", json={"chat_id": user.chat_id, "password": user.password + "x"})
    assert response.status == 422
    assert response.json == {"message": "Wrong password"}


@pytest.mark.parametrize(
    "body",
    [
        {"chat_id": 1},
        {"password": "secret1"},
        {"chat_id": "abc", "password": "secret1"},
        {"chat_id": "not@an@email", "password": "secret1"},
        {"chat_id": {"$gt": 0}, "password": "secret1"},
        {"chat_id": 1, "password": {"$ne": None}},
        {"chat_id": 1, "password": ""},
        {"chat_id": 1, "password": "secret1", "remember": True},
    ],
)
def test_login_invalid_input_is_400(api: Api, body: dict[str, object]) -> None:
    response = api.post("/api/login", json=body)
    assert response.status == 400
    assert response.json["errors"]


def test_login_with_password_over_72_bytes_is_422_not_500(api: Api) -> None:
    user = create_user(api, login=False)
    response = api.post("/api/login", json={"chat_id": user.chat_id, "password": "x" * 100})
    assert response.status == 422


def test_get_user_returns_the_current_user(api: Api) -> None:
    user = create_user(api)
    response = api.get("/api/getUser", headers=user.headers)
    assert response.status == 200
    assert response.json["id"] == user.id
    assert response.json["chat_id"] == user.chat_id


def test_bare_token_without_bearer_prefix_works(api: Api) -> None:
    user = create_user(api)
    bare = user.token.removeprefix("Bearer ")
    assert api.get("/api/getUser", headers=auth_headers(bare)).json["id"] == user.id
    assert api.get("/api/getUser", headers=auth_headers(f"bearer {bare}")).status == 200


@pytest.mark.parametrize("header", [b"Bearer \xff\xfe", b"\x80", b"Bearer", b"Bearer x"])
def test_undecodable_or_empty_tokens_are_401(api: Api, header: bytes) -> None:
    response = api.get("/api/getUser", headers={"Authorization": header})
    assert response.status == 401
    assert response.json["message"]


def test_missing_authorization_is_401_with_original_message(api: Api) -> None:
    response = api.get("/api/getUser")
    assert response.status == 401
    assert response.json == {"message": "Authorization not found!"}


def _bad_tokens(settings: Settings, user_id: str) -> dict[str, str]:
    now = int(time.time())
    good = create_token(user_id, 0, settings.jwt_secret, 3600)
    header, payload, signature = good.split(".")
    return {
        "garbage": "not.a.token",
        "tampered": f"{header}.{payload}.{signature[:-4]}AAAA",
        "other secret": create_token(user_id, 0, "another-secret-" + "x" * 40, 3600),
        "expired": jwt.encode(
            {"sub": user_id, "iat": now - 7200, "exp": now - 3600, "ver": 0}, settings.jwt_secret, algorithm="HS256"
        ),
        "alg none": jwt.encode({"sub": user_id, "iat": now, "exp": now + 3600, "ver": 0}, None, algorithm="none"),
        # signed with the right secret: only the algorithm is wrong
        "HS512": jwt.encode(
            {"sub": user_id, "iat": now, "exp": now + 3600, "ver": 0}, settings.jwt_secret, algorithm="HS512"
        ),
        "no version": jwt.encode({"sub": user_id, "iat": now, "exp": now + 3600}, settings.jwt_secret),
        "no expiry": jwt.encode({"sub": user_id, "iat": now, "ver": 0}, settings.jwt_secret),
        "unknown user": create_token("0123456789abcdef01234567", 0, settings.jwt_secret, 3600),
        "malformed subject": create_token("nope", 0, settings.jwt_secret, 3600),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "garbage", "tampered", "other secret", "expired", "alg none", "HS512",
        "no version", "no expiry", "unknown user", "malformed subject",
    ],
)  # fmt: skip
def test_bad_tokens_are_401(api: Api, settings: Settings, kind: str) -> None:
    user = create_user(api)
    token = _bad_tokens(settings, user.id)[kind]
    response = api.get("/api/getUser", headers=auth_headers(f"Bearer {token}"))
    assert response.status == 401
    assert response.json["message"]


def test_token_signed_for_the_user_works_as_control(api: Api, settings: Settings) -> None:
    user = create_user(api)
    token = create_token(user.id, 0, settings.jwt_secret, 3600)
    assert api.get("/api/getUser", headers=auth_headers(f"Bearer {token}")).status == 200


@pytest.mark.parametrize("method", ["get", "post"])
def test_logout_revokes_every_earlier_token_and_goes_offline(api: Api, method: str) -> None:
    user = create_user(api)
    second_device = log_in(api, user.chat_id, user.password)
    response = api.request(method, "/api/logout", headers=user.headers)
    assert response.status == 204
    assert api.get("/api/getUser", headers=user.headers).status == 401
    assert api.get("/api/getUser", headers=auth_headers(second_device)).status == 401
    fresh = log_in(api, user.chat_id, user.password)
    shown = api.get("/api/getUser", headers=auth_headers(fresh))
    assert shown.status == 200
    assert shown.json["flag"] == "online"
    assert api.get("/api/logout", headers=auth_headers(fresh)).status == 204
    witness = create_user(api)
    assert api.get(f"/api/users/{user.id}", headers=witness.headers).json["flag"] == "offline"


def test_logout_requires_token(api: Api) -> None:
    assert api.get("/api/logout").status == 401
    assert api.post("/api/logout").status == 401


def test_password_hashing_runs_below_the_event_loops_priority(api: Api, app: ChatApp) -> None:
    """Logins hash in threads that yield a contended core to the event loop, so reads are not queued behind bcrypt."""
    executor = app.ctx.hasher.executor
    loop_niceness = os.getpriority(os.PRIO_PROCESS, 0)
    hashing_niceness = executor.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result()
    assert hashing_niceness == min(19, loop_niceness + HASHING_NICENESS)
    # and the hasher those threads serve still answers logins
    user = create_user(api)
    assert api.post("/api/login", json={"chat_id": user.chat_id, "password": user.password}).status == 200
