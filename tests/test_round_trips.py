"""Store round trips per route (benchmark scenario 7), counted exactly: a new round trip fails here."""

from __future__ import annotations

import pytest

from bench.round_trips import CommandCounter, RoundTrips, client_sender, walk
from chat_api.store import client as store
from tests.conftest import OtherApp

# route -> (data commands, rate-limiter commands: one per budget whose reserved block is spent; the first request
# of a window reserves, docs/operations.md, "Rate limits").
# Since issue 14 no route reads the token's user: its token version comes from a per-process cache (filled by the
# login), so a read route costs only its own data; the listing also counts the users for X-Total-Count, sent
# together with the page (docs/performance.md).
EXPECTED: dict[str, tuple[int, int]] = {
    "POST /api/register": (1, 1),
    # the account; presence (docs/api.md, "Real time"): the login's record, the flag, and the friends to tell
    # (with friends, who blocks the user too, issue 13: a user with no friends here)
    "POST /api/login": (4, 2),
    "POST /api/users": (1, 1),
    # the profile, read now (a change made on another process shows)
    "GET /api/getUser": (1, 0),
    "GET /api/users/<id>": (1, 0),
    "GET /api/users/<own id>": (1, 0),
    "GET /api/users": (2, 0),
    "GET /api/users/checkEmail/<email>": (1, 1),
    "GET /api/users/checkChatId/<chat_id>": (1, 1),
    "PUT /api/users/<own id>": (1, 0),
    # revoke; presence: the records, the new token version, the `logout` event (newest seq, insert: every worker
    # closes the user's sockets and forgets the token version), the friends to tell
    "GET /api/logout": (6, 0),
    "POST /api/logout": (6, 0),
    # the deletion's mark, the user, the waiting requests (to, from), the friendships, presence records,
    # the `logout` event closing every socket (newest seq, insert), the blocks both ways (two deletes, together),
    # the memberships, the mark removed (an account without friends or groups: docs/reliability.md, "Account
    # deletion"); issue 13: its own copies of direct messages' search postings
    "DELETE /api/users/<own id>": (13, 0),
    "GET /healthz": (1, 0),
}


@pytest.fixture
def counted(other_app: OtherApp, monkeypatch: pytest.MonkeyPatch) -> dict[str, RoundTrips]:
    """Every route once, on an app whose store client reports its commands to a counter."""
    counter = CommandCounter()
    monkeypatch.setitem(store.CLIENT_OPTIONS, "event_listeners", [counter])
    with other_app() as client:
        return walk(client_sender(client), counter)


def test_every_route_takes_exactly_its_store_round_trips(counted: dict[str, RoundTrips]) -> None:
    measured = {route: (trips.data, trips.limiter) for route, trips in counted.items()}
    details = "\n".join(f"{route}: {trips}" for route, trips in counted.items())
    assert measured == EXPECTED, details


def test_the_listing_adds_only_the_count_to_the_page_and_every_other_read_is_one_command(
    counted: dict[str, RoundTrips],
) -> None:
    # the page and the count go out together, in either order
    assert sorted(counted["GET /api/users"].commands) == [("count", "users"), ("find", "users")]
    # GET /api/logout is a write that the old API reached by GET.
    reads = {r: trips.data for r, trips in counted.items() if r.startswith("GET ") and r != "GET /api/logout"}
    assert reads.pop("GET /api/users") == 2
    assert set(reads.values()) == {1}, reads
