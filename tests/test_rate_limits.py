"""Rate limits over real HTTP on the real store: budgets, 429s, back-off without lockout, shared counters, proxies."""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo.database import Database

from chat_api.config import Quota, RateLimits
from chat_api.http.types import ChatApp
from chat_api.ratelimit.service import Policy, window_of
from chat_api.store.embedded import free_loopback_port
from tests.conftest import GENEROUS, OtherApp
from tests.factories import create_user, user_payload
from tests.helpers import Api, subprocess_env
from tests.test_deploy import serving

DAY = 86400  # windows that do not end during a test (see clear_of_window_ends)
Limited = Callable[..., AbstractContextManager[Api]]
_ITEM = re.compile(r'"([a-z-]+)"((?:;[a-z]+=[0-9]+)+)')


def strict(**quotas: Any) -> RateLimits:
    """Every budget out of reach but the ones given."""
    values: dict[str, Any] = {"login": GENEROUS, "login_account": GENEROUS, "register": GENEROUS, "checks": GENEROUS}
    values.update(quotas)
    return RateLimits(**values)


@pytest.fixture
def limited(other_app: OtherApp) -> Limited:
    """An app of its own settings (strict limits, proxy trust) on the suite's store, behind `Api`'s checks."""

    @contextmanager
    def run(setup: Callable[[ChatApp], None] | None = None, **overrides: Any) -> Iterator[Api]:
        with other_app(setup, **overrides) as client:
            yield Api(client)

    return run


def clear_of_window_ends(*budgets: tuple[str, Quota, str], margin: float = 20.0) -> None:
    """Let any of these budgets' windows that ends within `margin` seconds end first, so that a test
    counting within one window never straddles two (windows are shifted per budget, so any
    moment can be the end of one; with a day's window this almost never waits)."""
    now = time.time()
    ends = [window_of(Policy(name, quota), subject, now).end for name, quota, subject in budgets]
    soon = [end for end in ends if end - now < margin]
    if soon:
        time.sleep(max(soon) - now + 0.05)


def sf_list(value: str) -> dict[str, dict[str, int]]:
    """A RateLimit / RateLimit-Policy field value as {policy: {parameter: integer}}, checking its syntax."""
    items: dict[str, dict[str, int]] = {}
    for member in value.split(","):
        match = _ITEM.fullmatch(member.strip())
        assert match, f"not a structured-field list of policy items: {value!r}"
        params = (param.split("=") for param in match.group(2)[1:].split(";"))
        items[match.group(1)] = {name: int(number) for name, number in params}
    return items


def from_address(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def log_in(api: Api, identifier: int | str, password: str, address: str | None = None) -> Any:
    headers = from_address(address) if address else None
    return api.post("/api/login", json={"chat_id": identifier, "password": password}, headers=headers)


def assert_too_many(response: Any, policy: str, window: int) -> int:
    """The 429 shape; returns the advised wait in ms."""
    assert response.status == 429, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json) == {"message", "retry_after_ms"}
    retry_ms = response.json["retry_after_ms"]
    assert isinstance(retry_ms, int)
    assert 0 < retry_ms <= window * 1000
    assert int(response.headers["retry-after"]) == math.ceil(retry_ms / 1000)
    state = sf_list(response.headers["ratelimit"])[policy]
    assert state["r"] == 0
    assert 0 < state["t"] <= int(response.headers["retry-after"])
    return retry_ms


def test_login_over_the_address_limit_is_429_with_retry_after_and_ratelimit_headers(limited: Limited) -> None:
    with limited(rate_limits=strict(login=Quota(3, DAY))) as api:
        user = create_user(api, login=False)
        clear_of_window_ends(("login", Quota(3, DAY), "127.0.0.1"))
        for left in (2, 1, 0):
            response = log_in(api, user.chat_id, user.password)
            assert response.status == 200
            policies = sf_list(response.headers["ratelimit-policy"])
            assert policies == {"login": {"q": 3, "w": DAY}, "login-account": {"q": GENEROUS.limit, "w": 60}}
            # The account's budget is not shown while it lets requests through (draft section 8.2).
            state = sf_list(response.headers["ratelimit"])
            assert list(state) == ["login"]
            assert state["login"]["r"] == left
            assert 0 < state["login"]["t"] <= DAY

        refused = log_in(api, user.chat_id, user.password)
        assert_too_many(refused, "login", DAY)
        assert "token" not in refused.json


def test_failed_logins_cost_more_than_good_ones(limited: Limited) -> None:
    with limited(rate_limits=strict(login=Quota(20, DAY), login_failure_cost=5)) as api:
        user = create_user(api, login=False)
        clear_of_window_ends(("login", Quota(20, DAY), "127.0.0.1"))
        steps: list[tuple[str, int | str, int, int]] = [
            (user.password, user.chat_id, 200, 19),
            ("wrong-password", user.chat_id, 422, 14),
            (user.password, 999_999_999_999, 404, 9),  # an unknown account is a failure too
            (user.password, user.email, 200, 8),
            ("wrong-password", user.email, 422, 3),
            # a correct login needs one unit, so it still gets in where a failure would spend 5
            (user.password, user.chat_id, 200, 2),
            (user.password, user.chat_id, 200, 1),
            (user.password, user.chat_id, 200, 0),
        ]
        for password, identifier, status, left in steps:
            response = log_in(api, identifier, password)
            assert response.status == status, (identifier, response.text)
            assert sf_list(response.headers["ratelimit"])["login"]["r"] == left
        assert_too_many(log_in(api, user.chat_id, user.password), "login", DAY)


def test_the_account_budget_counts_failures_by_chat_id_and_by_email_together(limited: Limited) -> None:
    with limited(rate_limits=strict(login_account=Quota(10, DAY), login_failure_cost=5), proxies_count=1) as api:
        victim = create_user(api, login=False)
        clear_of_window_ends(("login-account", Quota(10, DAY), f"user:{victim.id}"))
        assert log_in(api, victim.chat_id, "guess-1", "10.0.2.1").status == 422
        assert log_in(api, victim.email.upper(), "guess-2", "10.0.2.2").status == 422
        assert_too_many(log_in(api, victim.chat_id, victim.password, "10.0.2.3"), "login-account", DAY)
        assert_too_many(log_in(api, victim.email, victim.password, "10.0.2.4"), "login-account", DAY)


def test_an_attacker_refused_by_its_address_leaves_the_victim_free_to_log_in_from_elsewhere(
    limited: Limited,
) -> None:
    rules = strict(login=Quota(10, DAY), login_account=Quota(30, DAY), login_failure_cost=5)
    with limited(rate_limits=rules, proxies_count=1) as api:
        victim = create_user(api, login=False)
        clear_of_window_ends(
            ("login", Quota(10, DAY), "10.0.0.1"),
            ("login", Quota(10, DAY), "10.0.0.9"),
            ("login-account", Quota(30, DAY), f"user:{victim.id}"),
        )
        # chat_id and email name the same account, and so the same budget
        assert log_in(api, victim.chat_id, "guess-1", "10.0.0.1").status == 422
        assert log_in(api, victim.email, "guess-2", "10.0.0.1").status == 422
        for _ in range(25):
            # Refused by the address's budget, these never reach the account's: had they been
            # counted there, the account's 30 units would be gone.
            assert_too_many(log_in(api, victim.chat_id, "guess-n", "10.0.0.1"), "login", DAY)

        response = log_in(api, victim.chat_id, victim.password, "10.0.0.9")
        assert response.status == 200, response.text
        # and the attacker's address is still refused, even with the right password
        assert log_in(api, victim.chat_id, victim.password, "10.0.0.1").status == 429


def test_failures_from_many_addresses_back_the_account_off_only_until_its_window_ends(
    limited: Limited, sync_db: Database[dict[str, Any]]
) -> None:
    window = 2
    rules = strict(login=Quota(10, DAY), login_account=Quota(20, window), login_failure_cost=5)
    with limited(rate_limits=rules, proxies_count=1) as api:
        victim = create_user(api, login=False)
        refused = None
        # Each address may fail twice; four failures use up the account. A window can end
        # during the attack, which then simply goes on from more addresses.
        for attacker in range(1, 40):
            for _ in range(2):
                log_in(api, victim.chat_id, "guess", f"10.0.1.{attacker}")
            response = log_in(api, victim.chat_id, victim.password, "10.0.0.9")
            if response.status == 429:
                refused = response
                break
            assert response.status == 200, response.text
        assert refused is not None, "the account's budget never ran out"
        retry_ms = assert_too_many(refused, "login-account", window)

        # Back-off, not deletion: counters that the store has not (yet) expired change nothing.
        far = datetime(2100, 1, 1, tzinfo=UTC)
        sync_db["rate_limits"].update_many({}, {"$set": {"expires_at": far}})
        time.sleep(retry_ms / 1000 + 0.05)
        response = log_in(api, victim.chat_id, victim.password, "10.0.0.9")
        assert response.status == 200, response.text
        assert sync_db["rate_limits"].find_one({"_id": {"$regex": "^login-account:"}, "used": {"$gte": 20}})


def test_register_over_the_address_limit_is_429_and_post_users_shares_the_budget(limited: Limited) -> None:
    with limited(rate_limits=strict(register=Quota(3, DAY))) as api:
        clear_of_window_ends(("register", Quota(3, DAY), "127.0.0.1"))
        creator = create_user(api)  # 1
        taken = user_payload(api, email=creator.email)
        assert api.post("/api/register", json=taken).status == 422  # 2: attempts count, not successes
        created = api.post("/api/users", json=user_payload(api), headers=creator.headers)  # 3
        assert created.status == 201
        assert sf_list(created.headers["ratelimit"])["register"]["r"] == 0

        payload = user_payload(api)
        refused = api.post("/api/register", json=payload)
        assert_too_many(refused, "register", DAY)
        assert sf_list(refused.headers["ratelimit-policy"]) == {"register": {"q": 3, "w": DAY}}
        assert_too_many(api.post("/api/users", json=user_payload(api), headers=creator.headers), "register", DAY)
        # the token is checked first: an anonymous caller learns nothing about the budget
        assert api.post("/api/users", json=user_payload(api)).status == 401
        # a malformed body is refused before it is counted
        assert api.post("/api/register", json={"username": "x"}).status == 400
        assert log_in(api, payload["chat_id"], payload["password"]).status == 404  # nothing was created


def test_availability_checks_share_one_budget_and_withhold_the_answer_past_it(limited: Limited) -> None:
    with limited(rate_limits=strict(checks=Quota(4, DAY))) as api:
        user = create_user(api, login=False)
        clear_of_window_ends(("checks", Quota(4, DAY), "127.0.0.1"))
        steps = [
            (f"/api/users/checkEmail/{user.email}", 422, 3),
            ("/api/users/checkEmail/free@example.com", 200, 2),
            (f"/api/users/checkChatId/{user.chat_id}", 422, 1),
            ("/api/users/checkChatId/1", 200, 0),
        ]
        for path, status, left in steps:
            response = api.get(path)
            assert response.status == status
            assert sf_list(response.headers["ratelimit"])["checks"]["r"] == left
        assert_too_many(api.get(f"/api/users/checkEmail/{user.email}"), "checks", DAY)
        assert_too_many(api.get(f"/api/users/checkChatId/{user.chat_id}"), "checks", DAY)
        assert api.get("/api/users/checkEmail/not-an-email").status == 400


def test_concurrent_requests_get_exactly_the_budget_through(limited: Limited) -> None:
    """Counting is one atomic increment: no two requests read the same count and both pass."""
    with limited(rate_limits=strict(checks=Quota(5, DAY))) as api:
        clear_of_window_ends(("checks", Quota(5, DAY), "127.0.0.1"))
        responses = api.concurrently([("GET", f"/api/users/checkChatId/{n}", {}) for n in range(1, 21)])
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200] * 5 + [429] * 15


def test_a_forged_x_forwarded_for_does_not_change_the_client_key(limited: Limited) -> None:
    with limited(rate_limits=strict(register=Quota(2, DAY))) as api:
        clear_of_window_ends(("register", Quota(2, DAY), "127.0.0.1"))
        assert api.post("/api/register", json=user_payload(api), headers=from_address("1.1.1.1")).status == 201
        assert api.post("/api/register", json=user_payload(api), headers=from_address("2.2.2.2")).status == 201
        for headers in (from_address("3.3.3.3"), {"Forwarded": "for=4.4.4.4"}, {"X-Real-IP": "5.5.5.5"}):
            assert_too_many(api.post("/api/register", json=user_payload(api), headers=headers), "register", DAY)


def test_sanic_proxy_variables_in_the_environment_are_not_trusted(
    limited: Limited, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sanic would load SANIC_* variables into its config; only the app's settings may say whom to trust."""
    monkeypatch.setenv("SANIC_PROXIES_COUNT", "1")
    monkeypatch.setenv("SANIC_REAL_IP_HEADER", "X-Real-IP")
    monkeypatch.setenv("SANIC_FORWARDED_FOR_HEADER", "X-Client-IP")
    configs: list[Any] = []
    with limited(lambda app: configs.append(app.config), rate_limits=strict(register=Quota(1, DAY))) as api:
        config = configs[0]
        assert (config.PROXIES_COUNT, config.REAL_IP_HEADER, config.FORWARDED_FOR_HEADER) == (
            0,
            None,
            "X-Forwarded-For",
        )
        clear_of_window_ends(("register", Quota(1, DAY), "127.0.0.1"))
        headers = {"X-Forwarded-For": "1.1.1.1", "X-Real-IP": "1.1.1.1"}
        assert api.post("/api/register", json=user_payload(api), headers=headers).status == 201
        headers = {"X-Forwarded-For": "2.2.2.2", "X-Real-IP": "2.2.2.2"}
        assert_too_many(api.post("/api/register", json=user_payload(api), headers=headers), "register", DAY)


def test_behind_a_trusted_proxy_the_address_it_forwards_is_the_client_key(limited: Limited) -> None:
    """PROXIES_COUNT=1, as behind Heroku's router: the last X-Forwarded-For entry is the one the proxy added."""
    with limited(rate_limits=strict(register=Quota(1, DAY)), proxies_count=1) as api:

        def register(forwarded_for: str) -> int:
            response = api.post("/api/register", json=user_payload(api), headers=from_address(forwarded_for))
            return int(response.status)

        addresses = ["1.1.1.1", "2.2.2.2", "2001:db8::/64", "2001:db8:0:1::/64"]
        clear_of_window_ends(*(("register", Quota(1, DAY), address) for address in addresses))
        assert register("1.1.1.1") == 201
        assert register("1.1.1.1") == 429
        assert register("2.2.2.2") == 201
        assert register("6.6.6.6, 2.2.2.2") == 429  # the client's own entry comes first and is ignored
        assert register("2001:db8::1") == 201
        assert register("2001:db8::ffff") == 429  # one /64 is one subscriber
        assert register("2001:db8:0:1::1") == 201


def test_a_configured_real_ip_header_is_the_client_key(limited: Limited) -> None:
    with limited(rate_limits=strict(register=Quota(1, DAY)), real_ip_header="X-Real-IP") as api:
        clear_of_window_ends(*(("register", Quota(1, DAY), address) for address in ("7.7.7.7", "8.8.8.8")))
        assert api.post("/api/register", json=user_payload(api), headers={"X-Real-IP": "7.7.7.7"}).status == 201
        assert api.post("/api/register", json=user_payload(api), headers={"X-Real-IP": "7.7.7.7"}).status == 429
        assert api.post("/api/register", json=user_payload(api), headers={"X-Real-IP": "8.8.8.8"}).status == 201


def test_rate_limits_off_counts_nothing_and_sends_no_headers(
    limited: Limited, sync_db: Database[dict[str, Any]]
) -> None:
    with limited(rate_limits=RateLimits(enabled=False, register=Quota(1, DAY))) as api:
        for _ in range(3):
            response = api.post("/api/register", json=user_payload(api))
            assert response.status == 201
            assert "ratelimit" not in response.headers
    assert sync_db["rate_limits"].find_one() is None


def test_counters_of_ended_windows_are_deleted_by_the_ttl_index(
    limited: Limited, sync_db: Database[dict[str, Any]]
) -> None:
    """The counting never needs it (a window's start is in its key); the TTL index keeps the collection small."""
    ttl = [spec for spec in sync_db["rate_limits"].index_information().values() if spec["key"] == [("expires_at", 1)]]
    assert [spec["expireAfterSeconds"] for spec in ttl] == [0]
    with limited(rate_limits=strict(checks=Quota(5, 1))) as api:
        # Early in a one-second window (its offset is 0 for a 1 s window), so the counter is looked at before the
        # window ends and the TTL sweep may take it: the app's stop (after this block) may take longer than that.
        while time.time() % 1 > 0.2:
            time.sleep(0.01)
        assert api.get("/api/users/checkChatId/1").status == 200
        assert sync_db["rate_limits"].find_one({"_id": {"$regex": "^checks:"}}) is not None
    # MongoDB's TTL monitor runs once a minute; nx-27017 was seen deleting within seconds.
    deadline = time.monotonic() + 150
    while sync_db["rate_limits"].find_one({"_id": {"$regex": "^checks:"}}) is not None:
        assert time.monotonic() < deadline, "the ended window's counter was never deleted"
        time.sleep(0.5)


def test_two_instances_on_one_store_share_the_counters(tmp_path: Path) -> None:
    """Two `python -m chat_api` processes (two dynos, say) on one store: one budget, not one each."""
    ports = [free_loopback_port(), free_loopback_port()]
    env = subprocess_env(tmp_path / "data", RATE_LIMIT_REGISTER="3/1d")
    command = [sys.executable, "-m", "chat_api"]
    with (
        serving([*command, "--port", str(ports[0])], tmp_path, env, ports[0]),
        serving([*command, "--port", str(ports[1])], tmp_path, env, ports[1]),
    ):
        clear_of_window_ends(("register", Quota(3, DAY), "127.0.0.1"))
        statuses = []
        for port in [*ports, ports[0], ports[1], ports[0]]:
            response = httpx.post(f"http://127.0.0.1:{port}/api/register", json=user_payload(), timeout=30)
            statuses.append(response.status_code)
            assert sf_list(response.headers["ratelimit-policy"]) == {"register": {"q": 3, "w": DAY}}
        assert statuses == [201, 201, 201, 429, 429]
        assert int(response.headers["retry-after"]) > 0
