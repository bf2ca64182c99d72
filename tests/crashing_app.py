"""The app with an HTTP route and a WebSocket route that crash, for the log-hygiene tests: in process
(`add_crashing_routes`) and as a real server (`python -c "from tests.crashing_app import main; main()"`)."""

from __future__ import annotations

import logging
import sys

from sanic import Request
from sanic.response import HTTPResponse
from sanic.server.websockets.impl import WebsocketImplProtocol

import chat_api.__main__ as entry_point
from chat_api.app import create_app
from chat_api.config import Settings
from chat_api.http.types import ChatApp

CRASH_PATH = "/test-crash"
CRASH_WS_PATH = "/test-crash-ws"
log = logging.getLogger("chat_api.test_crash")


def _crash(request: Request) -> None:
    # Everything a careless handler or library could put in a log line or an exception.
    log.debug("about to crash on %s with headers %s", request.url, dict(request.headers))
    log.info("query %r, args %s", request.query_string, request.args)
    raise RuntimeError(f"crashed on {request.url!r} with Authorization {request.headers.get('authorization')}")


async def crash_http(request: Request) -> HTTPResponse:
    """Raises."""
    _crash(request)
    raise AssertionError("unreachable")


async def crash_websocket(request: Request, ws: WebsocketImplProtocol) -> None:
    """Raises once the socket is open."""
    _crash(request)


def add_crashing_routes(app: ChatApp) -> None:
    app.add_route(crash_http, CRASH_PATH)
    app.add_websocket_route(crash_websocket, CRASH_WS_PATH)


def create_crashing_app(settings: Settings | None = None) -> ChatApp:
    app = create_app(settings)
    add_crashing_routes(app)
    return app


def main() -> int:
    """`python -m chat_api`, with the crashing routes added to each worker's app."""
    setattr(entry_point, "create_app", create_crashing_app)  # noqa: B010 (a module attribute it does not export)
    return entry_point.main([])


if __name__ == "__main__":
    sys.exit(main())
