"""The rate limiter off the hot path: budgets reserved from the store in blocks, never exceeded across processes."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.round_trips import CommandCounter
from chat_api.config import Quota
from chat_api.ratelimit.service import MAX_BLOCK, Limiter, Policy, block_of
from chat_api.store import client as store
from chat_api.store.embedded import free_loopback_port
from tests.conftest import OtherApp
from tests.helpers import Api, subprocess_env
from tests.realtime_helpers import run
from tests.test_deploy import serving
from tests.test_rate_limits import DAY, clear_of_window_ends, sf_list, strict


def reservations_for(requests: int, limit: int) -> int:
    """Blocks of 1, 2, 4, ... up to block_of(limit): how many one process takes for `requests` units."""
    taken, block, count = 0, 1, 0
    while taken < requests:
        taken += min(block, block_of(limit))
        block *= 2
        count += 1
    return count


def test_block_sizes_keep_small_budgets_exact() -> None:
    assert [block_of(limit) for limit in (1, 3, 15, 31, 32, 100, 300, 10**9)] == [1, 1, 1, 1, 2, 6, 18, MAX_BLOCK]


def test_availability_checks_cost_a_store_command_per_block_not_per_request(
    other_app: OtherApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = CommandCounter()
    monkeypatch.setitem(store.CLIENT_OPTIONS, "event_listeners", [counter])
    budget = Quota(10_000, DAY)
    with other_app(rate_limits=strict(checks=budget)) as client:
        api = Api(client)
        clear_of_window_ends(("checks", budget, "127.0.0.1"))
        counter.commands.clear()
        counter.recording = True
        for n in range(1, 101):
            response = api.get(f"/api/users/checkChatId/{n}")
            assert response.status == 200
            # the client sees exactly what it has left, reservation or not
            assert sf_list(response.headers["ratelimit"])["checks"]["r"] == budget.limit - n
        counter.recording = False
    limiter = [c for c in counter.commands if c[1] == "rate_limits"]
    data = [c for c in counter.commands if c[1] != "rate_limits"]
    assert len(data) == 100  # one `find` each
    assert (
        limiter
        == [("findAndModify", "rate_limits")] * reservations_for(100, budget.limit)
        == [("findAndModify", "rate_limits")] * 7
    )  # blocks 1, 2, 4, 8, 16, 32, 64


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    limit=st.integers(1, 120),
    processes=st.integers(1, 4),
    turns=st.lists(st.integers(0, 3), min_size=1, max_size=250),
)
def test_no_number_of_processes_lets_more_than_the_budget_through(
    api: Api, limit: int, processes: int, turns: list[int]
) -> None:
    """Each Limiter is one process's; they share the store's count. Whatever the order of their requests:
    never more than the budget gets through; one process alone gets exactly the budget through, and reports
    exactly what is left; and once every process has been refused, at most one block each went unused."""
    policy = Policy("checks", Quota(limit, DAY))
    subject = f"prop-{uuid.uuid4().hex}"
    clear_of_window_ends(("checks", policy.quota, subject))
    limiters = [Limiter() for _ in range(processes)]

    async def scenario() -> tuple[int, list[bool]]:
        admitted = 0
        refused = [False] * processes
        for turn in turns:
            process = turn % processes
            usage = await limiters[process].count(policy, subject)
            if usage.refused:
                refused[process] = True
            else:
                admitted += 1
                if processes == 1:
                    assert usage.remaining == limit - admitted
        return admitted, refused

    admitted, refused = run(api, scenario())
    assert admitted <= limit
    if processes == 1:
        assert admitted == min(len(turns), limit)
    if all(refused):
        assert admitted >= limit - processes * (block_of(limit) - 1)


def test_a_budget_spread_over_two_instances_is_never_exceeded(tmp_path: Path) -> None:
    """Two `python -m chat_api` processes on one store, requests alternating: the budget holds across them."""
    limit = 64  # blocks of up to 4: at most 3 units each process may hold unspent
    ports = [free_loopback_port(), free_loopback_port()]
    env = subprocess_env(tmp_path / "data", RATE_LIMIT_CHECKS=f"{limit}/1d")
    command = [sys.executable, "-m", "chat_api"]
    with (
        serving([*command, "--port", str(ports[0])], tmp_path, env, ports[0]),
        serving([*command, "--port", str(ports[1])], tmp_path, env, ports[1]),
    ):
        clear_of_window_ends(("checks", Quota(limit, DAY), "127.0.0.1"))
        statuses = []
        with httpx.Client(timeout=30) as http:
            for n in range(3 * limit):
                port = ports[n % 2]
                statuses.append(http.get(f"http://127.0.0.1:{port}/api/users/checkChatId/{n + 1}").status_code)
    assert set(statuses) == {200, 429}
    admitted = statuses.count(200)
    assert limit - 2 * (block_of(limit) - 1) <= admitted <= limit
    # once refused, a process never lets one through again in the window
    for port_index in (0, 1):
        mine = statuses[port_index::2]
        first_refusal = mine.index(429)
        assert set(mine[first_refusal:]) == {429}
