"""No log line holds a token, even when an HTTP or a WebSocket handler crashes with one in the query
and in the Authorization header: every record at every level, in process and from a real server in
both log formats. A crashed HTTP handler answers a JSON 500; a crashed socket closes with 1011."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from websockets.asyncio.client import connect

from chat_api.config import Settings
from chat_api.logs import JsonFormatter, RequestContext, TextFormatter, configure_logging, redact
from chat_api.security import create_token
from tests.conftest import OtherApp
from tests.crashing_app import CRASH_PATH, CRASH_WS_PATH, add_crashing_routes
from tests.factories import create_user
from tests.helpers import Api, serve_and_log
from tests.realtime_helpers import close_code

INTERNAL_ERROR = {"message": "Internal server error"}


def secrets_of(token: str) -> list[str]:
    """The token as sent, the JWT alone, and its signature alone: none may appear in a log line."""
    jwt_part = token.removeprefix("Bearer ")
    return [token, jwt_part, jwt_part.rsplit(".", 1)[1]]


def leaks(lines: list[str], token: str) -> list[str]:
    return [line for line in lines if any(secret in line for secret in secrets_of(token))]


class Collect(logging.Handler):
    """Keeps every record it is given, whatever its level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def every_record(settings: Settings, caplog: pytest.LogCaptureFixture) -> Iterator[Collect]:
    """A handler on the root logger and on every logger that exists, all at DEBUG; caplog too.

    Loggers that do not propagate (the app's and Sanic's) would hide their records from a handler
    on the root alone. Afterwards the session app's logging is restored."""
    collect = Collect()
    caplog.set_level(logging.DEBUG)
    loggers = [logging.getLogger()] + [
        logger for logger in logging.root.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    levels = {logger: logger.level for logger in loggers}
    for logger in loggers:
        logger.addHandler(collect)
    try:
        yield collect
    finally:
        for logger in loggers:
            logger.removeHandler(collect)
            logger.setLevel(levels[logger])
        configure_logging(settings)


def rendered(records: list[logging.LogRecord]) -> list[str]:
    """Each record as the message alone, and as the app's text and JSON formatters write it."""
    request_context = RequestContext()
    lines: list[str] = []
    for record in records:
        request_context.filter(record)
        lines.append(record.getMessage())
        lines.append(record.exc_text or "")
        for formatter in (TextFormatter(), JsonFormatter()):
            lines.extend(formatter.format(record).splitlines())
    return lines


def test_crashing_handlers_log_no_token_at_any_level(
    api: Api, other_app: OtherApp, every_record: Collect, caplog: pytest.LogCaptureFixture
) -> None:
    token = create_user(api).token
    query = f"?token={quote(token)}&access_token={quote(token)}&last_seq=1"
    with other_app(setup=add_crashing_routes, log_level="DEBUG") as client:
        # The other app's logging is configured now: from here on, every logger logs at DEBUG.
        for logger in [logging.getLogger()] + [
            each for each in logging.root.manager.loggerDict.values() if isinstance(each, logging.Logger)
        ]:
            logger.setLevel(logging.DEBUG)
            if every_record not in logger.handlers:
                logger.addHandler(every_record)
        _, response = client.get(f"{CRASH_PATH}{query}", headers={"Authorization": token})
        assert response is not None
        assert response.status == 500
        assert response.json == INTERNAL_ERROR
        assert "Traceback" not in response.text
        assert "RuntimeError" not in response.text

        async def crash_the_socket() -> int | None:
            url = f"ws://{client.host}:{client.port}{CRASH_WS_PATH}{query}"
            async with connect(url, additional_headers={"Authorization": token}) as ws:
                return await close_code(ws)

        assert client._loop.run_until_complete(asyncio.wait_for(crash_the_socket(), 30)) == 1011

    records = every_record.records + caplog.records
    lines = rendered(records)
    assert not leaks(lines, token), leaks(lines, token)[:3]
    # The crashes were logged, with their traceback, by path: the query string is not in the line.
    crashes = [r for r in records if r.levelno >= logging.ERROR and r.exc_text and "RuntimeError" in r.exc_text]
    messages = {record.getMessage() for record in crashes}
    assert f"unhandled error on GET {CRASH_PATH}" in messages, messages
    assert f"unhandled error on GET {CRASH_WS_PATH}" in messages, messages
    # What the handler itself logged at DEBUG and INFO was kept, with the secrets taken out.
    assert any("about to crash" in record.getMessage() for record in records)
    assert any("token=[redacted]" in line for line in lines)


def test_a_crashed_socket_closes_1011_and_the_server_keeps_serving(api: Api, other_app: OtherApp) -> None:
    with other_app(setup=add_crashing_routes) as client:

        async def scenario() -> list[int | None]:
            codes = []
            for _ in range(2):
                async with connect(f"ws://{client.host}:{client.port}{CRASH_WS_PATH}") as ws:
                    codes.append(await close_code(ws))
            return codes

        assert client._loop.run_until_complete(asyncio.wait_for(scenario(), 30)) == [1011, 1011]
        _, health = client.get("/healthz")
        assert health is not None
        assert health.status == 200


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("GET http://h/ws?token=Bearer%20eyJa.eyJb.sig&last_seq=2", "last_seq=2"),
        ("{'authorization': 'Bearer abcdefghijkl'}", "authorization"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: "),
        ('{"password": "hunter22", "username": "bob"}', '"username": "bob"'),
        ("new_password=hunter22&x=1", "&x=1"),
        ("the token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl alone", "the token "),
    ],
)
def test_redact_takes_out_the_secret_and_keeps_the_rest(text: str, kept: str) -> None:
    out = redact(text)
    assert kept in out
    assert "[redacted]" in out
    for secret in ("eyJa.eyJb.sig", "abcdefghijkl", "dXNlcjpwYXNzd29yZA==", "hunter22", "c2lnbmF0dXJl"):
        assert secret not in out


def test_redact_leaves_ordinary_lines_alone() -> None:
    for line in (
        "user 6b0e36c2f754a53912830f85 logged in",
        "wrong password for chat_id 123",
        "chat_api.http.auth: 401 on GET /api/getUser",
        "delivery loop started after seq 12",
    ):
        assert redact(line) == line


# A real server (`python -m chat_api` with the crashing routes added), as tests/test_logs.py runs it.


def run_crashing_server(tmp_path: Path, log_format: str, token: str) -> list[str]:
    query = f"?token={quote(token)}&last_seq=1"

    def crash(port: int) -> None:
        response = httpx.get(
            f"http://127.0.0.1:{port}{CRASH_PATH}{query}", headers={"Authorization": token}, timeout=30
        )
        assert response.status_code == 500
        assert response.json() == INTERNAL_ERROR

        async def sockets() -> list[int | None]:
            codes = []
            for path in (CRASH_WS_PATH, "/ws"):
                # /ws: a last_seq that used to crash the handler, with the token in the query.
                url = f"ws://127.0.0.1:{port}{path}{query.replace('last_seq=1', 'last_seq=%C2%B2')}"
                async with connect(url, additional_headers={"Authorization": token}) as ws:
                    codes.append(await close_code(ws))
            return codes

        assert asyncio.run(sockets()) == [1011, 4401]

    command = [sys.executable, "-c", "from tests.crashing_app import main; raise SystemExit(main())"]
    return serve_and_log(tmp_path, log_format, command, crash)


@pytest.mark.no_store  # the server runs a store of its own
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_real_server_logs_crashes_without_the_token(tmp_path: Path, log_format: str) -> None:
    # A real token's shape and signature (the server's secret differs, which the crash routes never check).
    token = "Bearer " + create_token("6b0e36c2f754a53912830f85", 0, "a-test-secret-" * 4, 3600)
    lines = run_crashing_server(tmp_path, log_format, token)
    assert not leaks(lines, token), leaks(lines, token)[:3]
    text = "\n".join(lines)
    assert "RuntimeError: crashed on" in text or "RuntimeError: crashed on" in json.dumps(lines)
    assert f"unhandled error on GET {CRASH_WS_PATH}" in text
    assert "token=[redacted]" in text
    if log_format == "json":
        entries: list[dict[str, Any]] = [json.loads(line) for line in lines]
        crashes = [entry for entry in entries if "RuntimeError" in entry.get("exception", "")]
        assert {entry["message"] for entry in crashes} >= {
            f"unhandled error on GET {CRASH_PATH}",
            f"unhandled error on GET {CRASH_WS_PATH}",
        }
