"""Cross-cutting HTTP behaviour: error shapes, body limits, health and the OpenAPI document (CORS: test_headers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat_api.http.types import ChatApp
from chat_api.store.embedded import EmbeddedStore
from tests.conftest import OtherApp
from tests.helpers import Api


def test_malformed_json_is_400_json(api: Api) -> None:
    response = api.post("/api/register", content=b'{"username": ', headers={"content-type": "application/json"})
    assert response.status == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json["message"]


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"null", b"42"])
def test_json_that_is_not_an_object_is_400(api: Api, body: bytes) -> None:
    response = api.post("/api/login", content=body, headers={"content-type": "application/json"})
    assert response.status == 400
    assert response.json["message"] == "The request body must be a JSON object"


def test_body_over_one_mebibyte_is_413_json(api: Api) -> None:
    body = b'{"username": "' + b"x" * (1024 * 1024) + b'"}'
    response = api.post("/api/register", content=body, headers={"content-type": "application/json"})
    assert response.status == 413
    assert response.json["message"]


def test_unknown_route_is_404_json(api: Api) -> None:
    response = api.get("/api/nothing-here")
    assert response.status == 404
    assert response.json["message"]


def test_wrong_method_is_405_json(api: Api) -> None:
    response = api.delete("/api/login")
    assert response.status == 405
    assert response.json["message"]


def _add_failing_route(app: ChatApp) -> None:
    @app.get("/boom")
    async def boom(request: object) -> None:
        raise RuntimeError("secret internals: /srv/app/chat_api/users/service.py line 42")


def test_unexpected_exception_is_500_json_without_trace(other_app: OtherApp) -> None:
    with other_app(setup=_add_failing_route) as client:
        _, response = client.get("/boom")
    assert response.status == 500
    assert response.json == {"message": "Internal server error"}
    assert "Traceback" not in response.text
    assert "secret internals" not in response.text


def test_healthz_pings_the_store(api: Api) -> None:
    response = api.get("/healthz")
    assert response.status == 200
    assert response.json["status"] == "ok"
    assert response.json["store"] in {"embedded", "mongodb"}


def test_healthz_is_503_and_routes_answer_503_when_store_goes_away(other_app: OtherApp, tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "doomed").start()
    with other_app(mongodb_uri=store.uri) as client:
        _, health = client.get("/healthz")
        assert health.status == 200
        store.stop()
        # bounded by the ping timeout (2 s) and STORE_TIMEOUT (2.5 s), not by the client
        _, health = client.get("/healthz", timeout=15)
        _, check = client.get("/api/users/checkChatId/42", timeout=15)
    assert health.status == 503
    assert health.json["message"]
    assert check.status == 503
    assert check.json["message"]


def test_openapi_document_describes_every_route(other_app: OtherApp) -> None:
    # sanic-ext keeps route documentation per process and gives it to the app that started
    # last; a fresh app is that one whatever ran before.
    with other_app() as client:
        document = client.get("/docs/openapi.json")[1].json
    paths = document["paths"]
    expected = {
        ("/api/register", "post"): {"201", "400", "422"},
        ("/api/login", "post"): {"200", "400", "404", "422"},
        ("/api/getUser", "get"): {"200", "401"},
        ("/api/logout", "get"): {"204", "401"},
        ("/api/logout", "post"): {"204", "401"},
        ("/api/users", "get"): {"200", "400", "401"},
        ("/api/users", "post"): {"201", "400", "401", "422"},
        ("/api/users/{user_id}", "get"): {"200", "401", "404"},
        ("/api/users/{user_id}", "put"): {"204", "400", "401", "403", "404", "422"},
        ("/api/users/{user_id}", "delete"): {"200", "401", "403", "404"},
        ("/api/users/{user_id}/export", "get"): {"200", "401", "403", "404"},
        ("/api/users/checkEmail/{email}", "get"): {"200", "400", "422"},
        ("/api/users/checkChatId/{chat_id}", "get"): {"200", "400", "422"},
        ("/healthz", "get"): {"200", "503"},
    }
    for (path, method), statuses in expected.items():
        operation = paths[path][method]
        assert statuses <= set(operation["responses"]), (path, method)
        assert operation["summary"], (path, method)
    operation_ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))
    schemas = document["components"]["schemas"]
    assert "password" not in schemas["UserPublic"]["properties"]
    assert schemas["UserCreate"]["properties"]["email"]["format"] == "email"
    assert paths["/api/register"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/UserCreate"
    }
    assert paths["/api/getUser"]["get"]["security"] == [{"bearerAuth": []}]
    assert "security" not in paths["/api/register"]["post"]


def test_swagger_ui_is_served_at_docs(api: Api) -> None:
    response = api.get("/docs")
    if response.status in (301, 302, 307, 308):
        response = api.get(response.headers["location"])
    assert response.status == 200
    assert "swagger" in response.text.lower()
