"""GET /api/users/checkEmail/<email> and /api/users/checkChatId/<chat_id>."""

from __future__ import annotations

import pytest

from tests.factories import create_user
from tests.helpers import Api


def test_check_email_free_is_200(api: Api) -> None:
    response = api.get("/api/users/checkEmail/free@example.com")
    assert response.status == 200
    assert response.json["message"]


def assert_taken(api: Api, check: str) -> None:
    """The check answers that the value is taken: 422 with a message."""
    response = api.get(f"/api/users/{check}")
    assert response.status == 422
    assert response.json["message"]


def test_check_email_taken_is_422_case_insensitive(api: Api) -> None:
    user = create_user(api, login=False)
    assert_taken(api, f"checkEmail/{user.email}")
    assert_taken(api, f"checkEmail/{user.email.upper()}")


def test_check_email_url_encoded(api: Api) -> None:
    user = create_user(api, login=False, email="a+b@example.com")
    assert api.get("/api/users/checkEmail/a%2Bb%40example.com").status == 422
    assert user.email == "a+b@example.com"


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "@example.com", "x" * 300 + "@example.com"])
def test_check_email_invalid_is_400(api: Api, email: str) -> None:
    response = api.get(f"/api/users/checkEmail/{email}")
    assert response.status == 400
    assert response.json["message"] == "Not a valid email address"
    assert response.json["errors"][0]["field"] == "email"


def test_check_chat_id_free_and_taken(api: Api) -> None:
    user = create_user(api, login=False)
    assert api.get(f"/api/users/checkChatId/{user.chat_id + 1}").status == 200
    assert_taken(api, f"checkChatId/{user.chat_id}")


@pytest.mark.parametrize("chat_id", ["abc", "0", "-1", "1.5", str(2**63), "1_000"])
def test_check_chat_id_invalid_is_400(api: Api, chat_id: str) -> None:
    response = api.get(f"/api/users/checkChatId/{chat_id}")
    assert response.status == 400
    assert response.json["errors"][0]["field"] == "chat_id"


def test_checks_need_no_token(api: Api) -> None:
    assert api.get("/api/users/checkChatId/42").status == 200
