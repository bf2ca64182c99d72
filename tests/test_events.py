"""`GET /api/events`: the caller's stored events after a seq, paged, never transient ones nor other users'."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.database import Database

from chat_api.events.models import RETENTION_SECONDS, Event
from chat_api.events.service import prune, publish, signal, stored_filter
from tests.factories import create_user
from tests.helpers import Api
from tests.realtime_helpers import fresh_hub, message_data, run

pytestmark = pytest.mark.usefixtures(fresh_hub.__name__)


def test_events_need_a_token(api: Api) -> None:
    assert api.get("/api/events").status == 401


async def signal_typing(from_id: str, to_id: str) -> int:
    await signal("typing", {"from_id": from_id, "to_id": to_id}, to=[to_id])
    return 0


def test_events_after_a_seq_are_mine_stored_and_oldest_first(api: Api) -> None:
    alice, bob = create_user(api), create_user(api)

    async def fill() -> list[int]:
        return [
            await publish("message", [alice.id, bob.id], message_data(alice, bob, "one")),
            await signal_typing(alice.id, bob.id),
            await publish("message", [alice.id], message_data(bob, alice, "not bob's")),
            await publish("friend_request", [bob.id], {"request": {"from_id": alice.id, "to_id": bob.id}}),
        ]

    first, _, _, last = run(api, fill())
    assert last == first + 2, "the typing notice took no number"
    response = api.get("/api/events", headers=bob.headers)
    assert response.status == 200
    assert [(event["type"], event["seq"]) for event in response.json] == [("message", first), ("friend_request", last)]
    assert response.json[0]["message"]["msg"] == "one"
    assert response.headers["X-Has-More"] == "false"
    assert response.headers["X-Newest-Seq"] == str(last)
    after_first = api.get(f"/api/events?after={first}", headers=bob.headers)
    assert [event["seq"] for event in after_first.json] == [last]


def test_events_page_with_limit_and_x_has_more(api: Api) -> None:
    alice, bob = create_user(api), create_user(api)

    async def fill() -> list[int]:
        return [await publish("message", [bob.id], message_data(alice, bob, f"m{n}")) for n in range(7)]

    seqs = run(api, fill())
    got: list[int] = []
    after, pages = 0, 0
    while True:
        response = api.get(f"/api/events?after={after}&limit=3", headers=bob.headers)
        assert response.status == 200
        got += [event["seq"] for event in response.json]
        pages += 1
        if response.headers["X-Has-More"] == "false":
            break
        after = response.json[-1]["seq"]
    assert got == seqs
    assert pages == 3


@pytest.mark.parametrize("query", ["after=-1", "after=x", "limit=0", "limit=201", "after=1.5", "limit="])
def test_bad_paging_is_a_400(api: Api, query: str) -> None:
    alice = create_user(api)
    response = api.get(f"/api/events?{query}", headers=alice.headers)
    assert response.status == 400
    assert response.json["message"]


def test_after_beyond_the_newest_seq_is_a_422_resync(api: Api) -> None:
    alice = create_user(api)
    response = api.get("/api/events?after=999999", headers=alice.headers)
    assert response.status == 422
    assert response.json["message"].startswith("resync_required")


def test_after_older_than_the_oldest_kept_event_is_a_422_resync(api: Api) -> None:
    alice, bob = create_user(api), create_user(api)

    async def fill() -> tuple[int, int]:
        first = await publish("message", [bob.id], message_data(alice, bob, "expired"))
        second = await publish("message", [bob.id], message_data(alice, bob, "kept"))
        await Event.get_pymongo_collection().delete_one({"seq": first})  # what the TTL index does
        return first, second

    first, second = run(api, fill())
    assert api.get(f"/api/events?after={first - 1}", headers=bob.headers).status == 422
    response = api.get(f"/api/events?after={first}", headers=bob.headers)
    assert [event["seq"] for event in response.json] == [second]


def test_the_backlog_query_walks_an_index_not_the_collection(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    """Both stores walk the (p, seq) index from `after` to what the process has dispatched."""
    plan = str(sync_db["events"].find(stored_filter(0, 0, 100)).sort("seq", 1).limit(50).explain())
    assert "USING INDEX" in plan or "IXSCAN" in plan, plan
    assert "SCAN events" not in plan, plan
    assert "COLLSCAN" not in plan, plan


def test_prune_deletes_only_events_past_the_retention_period(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    """Expired events are deleted by the workers (no TTL index: on nx-27017 it costs a scan per read)."""
    user = create_user(api)

    async def scenario() -> int:
        for text in ("old", "kept"):
            await publish("message", [user.id], message_data(user, user, text))
        week_and_a_bit = datetime.now(UTC) - timedelta(seconds=RETENTION_SECONDS + 60)
        await Event.get_pymongo_collection().update_one({"p": 0, "seq": 1}, {"$set": {"created_at": week_and_a_bit}})
        return await prune()

    assert run(api, scenario()) == 1
    assert [doc["seq"] for doc in sync_db.events.find({}, sort=[("seq", 1)])] == [2]
    assert not any(index.get("expireAfterSeconds") is not None for index in sync_db.events.index_information().values())
