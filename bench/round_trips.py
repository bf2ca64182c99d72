"""Scenario 7: the store commands each route sends, counted with PyMongo's command monitoring.

`walk` sends one request to every route of the API, in an order that makes each one succeed,
and records the commands each request made. The test suite (tests/test_round_trips.py) holds
the counts to exact figures; the benchmark reports them against the target of 2.

Commands on the rate limiter's collections are counted apart from the data ones, so that the
limiter's cost shows in a column of its own and the data target stays the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

from chat_api.store.client import BACKGROUND

if TYPE_CHECKING:
    from sanic_testing.reusable import ReusableClient

# The collections of the rate limiter, whose commands are shown apart from the data's.
LIMITER_COLLECTIONS = frozenset({"rate_limits"})
# Sent when a client or session ends, never on behalf of a request.
HOUSEKEEPING = frozenset({"endSessions", "killCursors"})


@dataclass
class CommandCounter(CommandListener):
    """Records `<command> <collection>` for every command started while `recording`."""

    recording: bool = False
    commands: list[tuple[str, str]] = field(default_factory=list)

    def started(self, event: CommandStartedEvent) -> None:
        # A background task's commands (the real-time hub's) are no request's.
        if self.recording and event.command_name not in HOUSEKEEPING and not BACKGROUND.get():
            # The command's own field names its collection (getMore names it in `collection`).
            target = event.command.get("collection", event.command.get(event.command_name))
            self.commands.append((event.command_name, target if isinstance(target, str) else ""))

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


@dataclass(frozen=True)
class RoundTrips:
    commands: tuple[tuple[str, str], ...]

    @property
    def data(self) -> int:
        return sum(1 for _, collection in self.commands if collection not in LIMITER_COLLECTIONS)

    @property
    def limiter(self) -> int:
        return len(self.commands) - self.data

    def __str__(self) -> str:
        return ", ".join(f"{name} {collection}".strip() for name, collection in self.commands) or "none"


# send(method, path, token, json body) -> (status, parsed JSON body or None)
Send = Callable[[str, str, str | None, Any], tuple[int, Any]]


def client_sender(client: ReusableClient) -> Send:
    """A `Send` over a running app's test client (the benchmark's and the test suite's)."""

    def send(method: str, path: str, token: str | None, body: Any) -> tuple[int, Any]:
        headers = {"Authorization": token} if token else {}
        _, response = client.request(path, http_method=method.lower(), headers=headers, json=body)
        return response.status, response.json if response.content else None

    return send


def walk(send: Send, counter: CommandCounter) -> dict[str, RoundTrips]:
    """One successful request to every route; the commands each one sent, by route."""
    measured: dict[str, RoundTrips] = {}

    def call(route: str, path: str, expect: int, token: str | None = None, body: Any = None) -> Any:
        method = route.split(" ", 1)[0]
        counter.commands.clear()
        counter.recording = True
        try:
            status, answer = send(method, path, token, body)
        finally:
            counter.recording = False
        if status != expect:
            raise AssertionError(f"{route} ({path}) answered {status}, expected {expect}: {answer}")
        measured[route] = RoundTrips(tuple(counter.commands))
        return answer

    def unmeasured(method: str, path: str, body: Any) -> Any:
        return send(method, path, None, body)[1]

    me = {"username": "walker", "password": "walk-password", "email": "walker@example.com", "chat_id": 4_000_001}
    other = {"username": "other", "password": "other-password", "email": "other@example.com", "chat_id": 4_000_002}
    credentials = {"chat_id": me["chat_id"], "password": me["password"]}

    my_id = call("POST /api/register", "/api/register", 201, body=me)["user_id"]
    token = call("POST /api/login", "/api/login", 200, body=credentials)["token"]
    other_id = call("POST /api/users", "/api/users", 201, token, other)["user_id"]
    call("GET /api/getUser", "/api/getUser", 200, token)
    call("GET /api/users/<id>", f"/api/users/{other_id}", 200, token)
    call("GET /api/users/<own id>", f"/api/users/{my_id}", 200, token)
    call("GET /api/users", "/api/users?limit=50", 200, token)
    call("GET /api/users/checkEmail/<email>", f"/api/users/checkEmail/{me['email']}", 422)
    call("GET /api/users/checkChatId/<chat_id>", "/api/users/checkChatId/4000003", 200)
    call("PUT /api/users/<own id>", f"/api/users/{my_id}", 204, token, {"personality": "walking"})
    call("GET /api/logout", "/api/logout", 204, token)
    token = unmeasured("POST", "/api/login", credentials)["token"]
    call("POST /api/logout", "/api/logout", 204, token)
    token = unmeasured("POST", "/api/login", credentials)["token"]
    call("DELETE /api/users/<own id>", f"/api/users/{my_id}", 200, token)
    call("GET /healthz", "/healthz", 200)
    return measured
