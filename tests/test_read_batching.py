"""Profiles asked for in one turn of the event loop are read with one store command, and each request still gets
its own answer (chat_api/common/batching.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat_api.users import repository
from chat_api.users.schemas import UserPublic
from tests.counted import Counted, counted
from tests.factories import create_user
from tests.realtime_helpers import run

__all__ = ["counted"]  # a fixture used by name
T = TypeVar("T")


def recorded(counted: Counted, scenario: Coroutine[Any, Any, T]) -> tuple[T, list[tuple[str, str]]]:
    counted.counter.commands.clear()
    counted.counter.recording = True
    try:
        result = run(counted.api, scenario)
    finally:
        counted.counter.recording = False
    return result, list(counted.counter.commands)


async def profiles_together(ids: list[ObjectId]) -> list[UserPublic | None]:
    return list(await asyncio.gather(*(repository.get_public_user(oid) for oid in ids)))


def test_profiles_asked_for_in_one_turn_cost_one_command(counted: Counted) -> None:
    people = [create_user(counted.api, login=False) for _ in range(4)]
    nobody = ObjectId()
    asked = [ObjectId(p.id) for p in people] + [nobody, ObjectId(people[0].id)]  # a missing one, a repeated one
    profiles, trips = recorded(counted, profiles_together(asked))
    assert trips == [("find", "users")]
    assert [p.id if p else None for p in profiles] == [p.id for p in people] + [None, people[0].id]
    assert [p.chat_id for p in profiles if p] == [p.chat_id for p in people] + [people[0].chat_id]


def test_a_profile_asked_for_alone_costs_one_command(counted: Counted) -> None:
    person = create_user(counted.api, login=False)
    profiles, trips = recorded(counted, profiles_together([ObjectId(person.id)]))
    assert trips == [("find", "users")]
    assert profiles[0] is not None
    assert profiles[0].email == person.email


def test_more_profiles_than_a_batch_holds_cost_a_command_per_batch(counted: Counted, monkeypatch: Any) -> None:
    monkeypatch.setattr(repository._profiles, "max_batch", 2)
    people = [create_user(counted.api, login=False) for _ in range(5)]
    profiles, trips = recorded(counted, profiles_together([ObjectId(p.id) for p in people]))
    assert trips == [("find", "users")] * 3
    assert [p.id for p in profiles if p] == [p.id for p in people]


def test_profile_reads_in_turns_of_their_own_cost_a_command_each(counted: Counted) -> None:
    people = [create_user(counted.api, login=False) for _ in range(3)]

    async def one_by_one() -> list[UserPublic | None]:
        return [await repository.get_public_user(ObjectId(p.id)) for p in people]

    profiles, trips = recorded(counted, one_by_one())
    assert trips == [("find", "users")] * 3
    assert [p.id for p in profiles if p] == [p.id for p in people]


# Through HTTP: requests sent at once on connections of their own, whichever batches the server forms.
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(picks=st.lists(st.integers(0, 2), min_size=1, max_size=24))
def test_requests_at_once_each_get_their_own_profile(counted: Counted, picks: list[int]) -> None:
    people = [create_user(counted.api, login=n == 0) for n in range(3)]
    base = f"http://{counted.api.client.host}:{counted.api.client.port}"

    async def at_once() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(picks))
        async with httpx.AsyncClient(base_url=base, limits=limits) as client:
            headers = {"Authorization": people[0].token}
            asked = (client.get(f"/api/users/{people[i].id}", headers=headers) for i in picks)
            return list(await asyncio.gather(*asked))

    answers = run(counted.api, at_once())
    assert [a.status_code for a in answers] == [200] * len(picks)
    assert [a.json()["id"] for a in answers] == [people[i].id for i in picks]
    assert [a.json()["chat_id"] for a in answers] == [people[i].chat_id for i in picks]
