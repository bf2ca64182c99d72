"""`GET /metrics` (docs/operations.md, "Metrics"): off without METRICS_TOKEN, a bearer token with it, and every figure
counted as it happens: requests by route template, store commands, sockets, events, refusals, the process; and, in a
real server with two workers, every worker's requests in one scrape (prometheus-client's multiprocess mode)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from chat_api.config import Quota
from chat_api.metrics.registry import FLUSH_INTERVAL
from chat_api.realtime.hub import Hub
from tests.conftest import OtherApp
from tests.factories import create_user, make_friends
from tests.helpers import Api, assert_error, running_server
from tests.realtime_helpers import next_frame, open_socket, run, ws_url
from tests.test_rate_limits import strict

TOKEN = secrets.token_urlsafe(32)
BEARER = {"Authorization": f"Bearer {TOKEN}"}
USER_ROUTE = "/api/users/<user_id:str>"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples that carry these labels (0 when there is none yet)."""
    wanted = set(labels.items())
    return sum(value for (sample, have), value in samples.items() if sample == name and wanted <= have)


def scrape(api: Api) -> Samples:
    response = api.get("/metrics", headers=BEARER)
    assert response.status == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(response.text)


async def scrape_async(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics", headers=BEARER)
    assert response.status_code == 200, response.text
    return parse(response.text)


@pytest.fixture
def metered(other_app: OtherApp) -> Iterator[Api]:
    """An app with METRICS_TOKEN set. Its figures live in the process's one registry, which every such app of the
    test process shares: the tests compare a scrape before with one after."""
    with other_app(metrics_token=TOKEN) as client:
        yield Api(client)


def test_metrics_without_a_token_setting_is_not_found(api: Api) -> None:
    """As any unknown path: an instance without metrics does not say it could have them."""
    assert_error(api.get("/metrics", headers=BEARER), 404, "Requested URL /metrics not found")
    assert_error(api.get("/no-such-path"), 404, "Requested URL /no-such-path not found")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-of-some-length"}, {"Authorization": TOKEN}, {"Authorization": "Bearer"}],
    ids=["missing", "wrong", "without Bearer", "empty"],
)
def test_metrics_without_the_right_bearer_token_are_unauthorized(metered: Api, headers: dict[str, str]) -> None:
    assert_error(metered.get("/metrics", headers=headers), 401, "Unauthorized")


def test_metrics_are_not_in_the_openapi_document(metered: Api) -> None:
    assert "/metrics" not in metered.get("/docs/openapi.json").json["paths"]


def test_requests_are_counted_by_route_template_never_by_path(metered: Api) -> None:
    alice, bob = create_user(metered), create_user(metered)
    before = scrape(metered)
    for _ in range(2):
        assert metered.get(f"/api/users/{bob.id}", headers=alice.headers).status == 200
    assert metered.get(f"/api/users/{bob.id}").status == 401
    assert metered.get(f"/no/such/{bob.id}").status == 404
    text = metered.get("/metrics", headers=BEARER).text
    after = parse(text)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    ok = {"route": USER_ROUTE, "method": "GET", "status": "200"}
    assert delta("chat_api_requests_total", **ok) == 2
    assert delta("chat_api_requests_total", route=USER_ROUTE, method="GET", status="401") == 1
    assert delta("chat_api_requests_total", route="unmatched", method="GET", status="404") == 1
    assert delta("chat_api_request_duration_seconds_count", route=USER_ROUTE, method="GET") == 3
    assert delta("chat_api_request_duration_seconds_bucket", route=USER_ROUTE, method="GET", le="+Inf") == 3
    assert bob.id not in text
    assert alice.id not in text


def test_store_commands_are_counted_by_name(metered: Api) -> None:
    """GET /api/users/<id> spends one `find` (tests/test_round_trips.py); the hub's background reads are stopped
    here, so that nothing else sends a command between the two scrapes."""
    alice, bob = create_user(metered), create_user(metered)
    hub: Hub = metered.client.app.ctx.hub
    for task in hub.tasks:
        task.cancel()
    run(metered, asyncio.wait(hub.tasks))
    hub.tasks = []
    metered.get(f"/api/users/{bob.id}", headers=alice.headers)  # the token's version is read once, then kept
    before = scrape(metered)
    assert metered.get(f"/api/users/{bob.id}", headers=alice.headers).status == 200
    after = scrape(metered)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("chat_api_store_commands_total") == delta("chat_api_store_commands_total", command="find") == 1
    assert delta("chat_api_store_command_duration_seconds_count", command="find") == 1
    assert delta("chat_api_store_command_failures_total") == 0


def test_open_websockets_are_a_gauge(metered: Api) -> None:
    user = create_user(metered)
    base = f"http://{metered.client.host}:{metered.client.port}"

    async def scenario() -> tuple[float, float, float]:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            before = total(await scrape_async(http), "chat_api_websockets_open")
            ws, _ = await open_socket(ws_url(metered), user)
            opened = total(await scrape_async(http), "chat_api_websockets_open")
            await ws.close()
            deadline = time.monotonic() + 5
            while (closed := total(await scrape_async(http), "chat_api_websockets_open")) != before:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            return before, opened, closed

    before, opened, closed = run(metered, scenario())
    assert (opened, closed) == (before + 1, before)


def test_a_direct_message_is_published_once_and_delivered_to_both_sockets(metered: Api) -> None:
    alice, bob = create_user(metered), create_user(metered)
    make_friends(metered, alice, bob)
    base = f"http://{metered.client.host}:{metered.client.port}"

    async def scenario() -> tuple[Samples, Samples]:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            alice_ws, _ = await open_socket(ws_url(metered), alice)
            bob_ws, _ = await open_socket(ws_url(metered), bob)
            before = await scrape_async(http)
            sent = await http.post("/api/user-message", headers=alice.headers, json={"to_id": bob.id, "msg": "counted"})
            assert sent.status_code == 201, sent.text
            for ws in (alice_ws, bob_ws):
                while (await next_frame(ws))["type"] != "message":
                    pass
            after = await scrape_async(http)
            await alice_ws.close()
            await bob_ws.close()
            return before, after

    before, after = run(metered, scenario())

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("chat_api_events_published_total", type="message") == 1
    assert delta("chat_api_events_delivered_total", type="message") == 2
    assert delta("chat_api_event_delivery_lag_seconds_count") == 1  # one event, one observation per process
    assert 0 <= delta("chat_api_event_delivery_lag_seconds_sum") < 5


def test_a_refusal_with_429_is_counted_by_its_budget(other_app: OtherApp) -> None:
    with other_app(metrics_token=TOKEN, rate_limits=strict(checks=Quota(1, 86400))) as client:
        api = Api(client)
        before = scrape(api)
        assert api.get("/api/users/checkChatId/123456789").status == 200
        assert api.get("/api/users/checkChatId/123456789").status == 429
        after = scrape(api)
    refused = total(after, "chat_api_rate_limit_refusals_total", policy="checks")
    assert refused - total(before, "chat_api_rate_limit_refusals_total", policy="checks") == 1


def test_the_process_reports_its_cpu_time_and_memory(metered: Api) -> None:
    samples = scrape(metered)
    assert total(samples, "chat_api_process_cpu_seconds") > 0
    assert total(samples, "chat_api_process_resident_memory_bytes") > 10 * 1024 * 1024


# Two workers


def per_worker_requests(folder: Path) -> dict[str, float]:
    """Each worker's own count of the requests of USER_ROUTE, read from its own file (the scrape sums them)."""
    counts: dict[str, float] = {}
    for path in folder.glob("counter_*.db"):
        samples = [
            sample
            for family in MultiProcessCollector.merge([str(path)])  # type: ignore[no-untyped-call]
            for sample in family.samples
            if sample.name == "chat_api_requests_total" and sample.labels.get("route") == USER_ROUTE
        ]
        counts[path.stem] = sum(sample.value for sample in samples)
    return counts


def test_one_scrape_counts_the_requests_of_every_worker(tmp_path: Path) -> None:
    """N requests, each on a connection of its own, until both workers have served some (the kernel spreads the
    connections as it likes, and each worker's file shows its share): one scrape, served by either worker, counts
    all N."""
    folder = tmp_path / "metrics"
    with running_server(tmp_path, WEB_CONCURRENCY="2", METRICS_TOKEN=TOKEN, METRICS_DIR=str(folder)) as (_, port):
        base = f"http://127.0.0.1:{port}"
        sent = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for _ in range(10):
                with httpx.Client(base_url=base, timeout=10) as http:
                    assert http.get(f"/api/users/{secrets.token_hex(12)}").status_code == 401
                sent += 1
            if len([n for n in per_worker_requests(folder).values() if n > 0]) == 2:
                break
        spread = per_worker_requests(folder)
        assert len([n for n in spread.values() if n > 0]) == 2, spread
        # Each worker writes its figures to the shared files every FLUSH_INTERVAL: within it, one scrape has all.
        time.sleep(FLUSH_INTERVAL + 0.5)
        answer = httpx.get(f"{base}/metrics", headers=BEARER, timeout=10)
    assert answer.status_code == 200
    samples = parse(answer.text)
    assert total(samples, "chat_api_requests_total", route=USER_ROUTE, status="401") == sent
    pids = {dict(labels)["pid"] for name, labels in samples if name == "chat_api_process_cpu_seconds"}
    assert len(pids) == 2
