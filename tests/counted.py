"""A fixture for the issue 13 social tests (blocks, mute, read receipts): an app of its own whose store commands
are counted per request, as tests/test_chat_round_trips.py counts them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sanic_testing.testing import TestingResponse

from bench.round_trips import CommandCounter, RoundTrips
from chat_api.store import client as store
from tests.conftest import OtherApp
from tests.helpers import Api


@dataclass
class Counted:
    """The counted app's API, and `count(send)`: the answer of one request and the store commands it took."""

    api: Api
    counter: CommandCounter

    def count(self, send: Callable[[], TestingResponse]) -> tuple[TestingResponse, RoundTrips]:
        self.counter.commands.clear()
        self.counter.recording = True
        try:
            response = send()
        finally:
            self.counter.recording = False
        return response, RoundTrips(tuple(self.counter.commands))


@pytest.fixture
def counted(other_app: OtherApp, monkeypatch: pytest.MonkeyPatch) -> Iterator[Counted]:
    counter = CommandCounter()
    monkeypatch.setitem(store.CLIENT_OPTIONS, "event_listeners", [counter])
    with other_app() as client:
        yield Counted(Api(client), counter)


def commands(trips: RoundTrips) -> list[Any]:
    """The commands in a stable order (those sent together may start in either order)."""
    return sorted(trips.commands)
