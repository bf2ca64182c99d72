"""The logs of a real run (`python -m chat_api`, access log on, DEBUG): text or JSON lines, request ids
in them, and never a password or a token."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.factories import new_password, user_payload
from tests.helpers import serve_and_log

pytestmark = pytest.mark.no_store  # the server under test runs a store of its own


@dataclass
class Run:
    """What a scenario sent and got, and every line the server wrote to stdout and stderr."""

    lines: list[str] = field(default_factory=list)
    passwords: set[str] = field(default_factory=set)
    tokens: set[str] = field(default_factory=set)
    # request id -> (method, path, status) of the response that echoed it
    responses: dict[str, tuple[str, str, int]] = field(default_factory=dict)


class Client:
    def __init__(self, base_url: str, run: Run):
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.run = run
        self.count = 0

    def send(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> httpx.Response:
        self.count += 1
        headers = {"X-Request-ID": f"scenario-{self.count}"}
        if token is not None:
            headers["Authorization"] = token
            self.run.tokens.add(token)
        body = kwargs.get("json")
        if isinstance(body, dict) and isinstance(body.get("password"), str):
            self.run.passwords.add(body["password"])
        response = self.http.request(method, path, headers=headers, **kwargs)
        request_id = response.headers["x-request-id"]
        assert request_id == headers["X-Request-ID"]
        self.run.responses[request_id] = (method, path, response.status_code)
        return response


def scenario(client: Client) -> None:
    """Register, log in and fail to, read, change the password, log out, and a few errors."""
    payload = user_payload()
    assert client.send("POST", "/api/register", json=payload).status_code == 201
    login = {"chat_id": payload["chat_id"], "password": payload["password"]}
    token = client.send("POST", "/api/login", json=login).json()["token"]
    client.run.tokens.add(token)
    wrong = {"chat_id": payload["chat_id"], "password": new_password()}
    assert client.send("POST", "/api/login", json=wrong).status_code == 422
    # A password typed into the login field: it must not be logged as an unknown account.
    typed_in_login_field = new_password()
    client.run.passwords.add(typed_in_login_field)
    unknown = {"chat_id": f"{typed_in_login_field}@example.com", "password": new_password()}
    assert client.send("POST", "/api/login", json=unknown).status_code == 404
    short = user_payload(password="abc12")
    assert client.send("POST", "/api/register", json=short).status_code == 400
    me = client.send("GET", "/api/getUser", token=token).json()
    update = {"personality": "hello", "password": new_password()}
    assert client.send("PUT", f"/api/users/{me['id']}", token=token, json=update).status_code == 204
    relogin = {"chat_id": payload["email"], "password": update["password"]}
    second = client.send("POST", "/api/login", json=relogin).json()["token"]
    client.run.tokens.add(second)
    forged = jwt.encode({"sub": me["id"], "iat": 1, "exp": 2**31, "ver": 0}, "x" * 40, algorithm="HS256")
    assert client.send("GET", "/api/getUser", token=f"Bearer {forged}").status_code == 401
    assert client.send("GET", "/api/logout", token=second).status_code == 204
    assert client.send("GET", "/api/getUser", token=second).status_code == 401
    assert client.send("GET", "/api/nothing-here").status_code == 404
    assert client.send("DELETE", "/api/login").status_code == 405
    assert client.send("GET", "/api/users/checkEmail/not-an-email").status_code == 400


def run_scenario(tmp_path: Path, log_format: str) -> Run:
    run = Run()

    def play(port: int) -> None:
        scenario(Client(f"http://127.0.0.1:{port}", run))

    run.lines = serve_and_log(tmp_path, log_format, [sys.executable, "-m", "chat_api"], play)
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Run]:
    """One run per log format, shared by the tests of this module."""
    done: dict[str, Run] = {}

    def get(log_format: str) -> Run:
        if log_format not in done:
            done[log_format] = run_scenario(tmp_path_factory.mktemp(f"logs-{log_format}"), log_format)
        return done[log_format]

    return get


@pytest.fixture(params=["text", "json"])
def run(request: pytest.FixtureRequest, runs: Callable[[str], Run]) -> Run:
    return runs(request.param)


@pytest.fixture
def json_run(runs: Callable[[str], Run]) -> Run:
    return runs("json")


@pytest.fixture
def text_run(runs: Callable[[str], Run]) -> Run:
    return runs("text")


def test_no_log_line_contains_a_password_or_a_token(run: Run) -> None:
    assert run.passwords
    assert run.tokens
    secrets = set(run.passwords)
    for token in run.tokens:
        jwt_part = token.removeprefix("Bearer ")
        secrets |= {jwt_part, jwt_part.rsplit(".", 1)[1]}  # the whole token, and its signature alone
    assert "$2b$" not in "\n".join(run.lines), "a bcrypt hash in the logs"
    leaks = [(secret, line) for line in run.lines for secret in secrets if secret in line]
    assert not leaks, leaks[:3]


def test_json_logs_are_one_object_a_line_from_the_app_and_sanic(json_run: Run) -> None:
    entries = [json.loads(line) for line in json_run.lines]  # every line, stdout and stderr
    assert all(isinstance(entry, dict) for entry in entries)
    for entry in entries:
        assert {"time", "level", "logger", "message", "request_id"} <= set(entry), entry
    loggers = {entry["logger"] for entry in entries}
    assert {"sanic.root", "sanic.access", "sanic.server", "chat_api", "chat_api.auth"} <= loggers


def test_json_access_lines_carry_the_request_id_and_the_request(json_run: Run) -> None:
    access = {
        entry["request_id"]: entry
        for entry in map(json.loads, json_run.lines)
        if entry["logger"] == "sanic.access" and entry["request_id"]
    }
    for request_id, (method, path, status) in json_run.responses.items():
        entry = access[request_id]
        assert (entry["method"], entry["path"], entry["status"]) == (method, path, status)
        assert isinstance(entry["duration_ms"], float)
        assert entry["duration_ms"] >= 0
        assert entry["client"].startswith("127.0.0.1:")


def test_app_log_lines_written_while_handling_a_request_carry_its_id(json_run: Run) -> None:
    wrong_password = next(rid for rid, (_, path, status) in json_run.responses.items() if status == 422)
    lines = [
        entry
        for entry in map(json.loads, json_run.lines)
        if entry["logger"] == "chat_api.auth" and entry["request_id"] == wrong_password
    ]
    assert [entry["message"] for entry in lines if "wrong password" in entry["message"]], lines


def test_text_logs_put_the_request_id_on_access_and_app_lines(text_run: Run) -> None:
    wrong_password = next(rid for rid, (_, path, status) in text_run.responses.items() if status == 422)
    tagged = [line for line in text_run.lines if line.endswith(f"[request_id={wrong_password}]")]
    assert any("sanic.access" in line and "POST /api/login 422" in line for line in tagged), tagged
    assert any("chat_api.auth" in line and "wrong password" in line for line in tagged), tagged
    for line in text_run.lines:
        assert not line.startswith("{"), line
