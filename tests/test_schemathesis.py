"""Schemathesis over the app's own OpenAPI document: every route, no 500, every answer as documented.

The app is the one `create_app` builds (settings of the test's own, so limits can be relaxed here),
served on a loopback port and backed by the session's real store. Schemathesis sends real HTTP
with `requests` from a worker thread while the server's event loop runs in this one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from sanic_testing.reusable import ReusableClient
from schemathesis.config import SchemathesisConfig
from schemathesis.schemas import BaseSchema

from tests.conftest import OtherApp
from tests.factories import TestUser, create_group, create_user
from tests.helpers import BCRYPT_PREFIXES, Api

T = TypeVar("T")

CONFIG: dict[str, Any] = {
    # A fixed seed: the same cases on every run, so a failure is reproducible and never flaky.
    "seed": 20260501,
    "generation": {"max-examples": 40, "database": "none"},
    "checks": {
        # JSON Schema cannot state every rule the API enforces: bcrypt's 72-byte password limit,
        # which email domains are deliverable (email-validator refuses `.test`), or that the digit
        # string "0" is not a positive chat_id. Valid-looking data refused with a documented 400
        # is therefore not a defect; everything else (500s, undocumented statuses, content types,
        # bodies and headers that do not match their schema, accepted invalid data) is checked.
        "positive_data_acceptance": {"enabled": False},
    },
}


@dataclass
class Target:
    """The app under test, a logged-in user of it, and a way to send real HTTP to it."""

    client: ReusableClient
    api: Api
    base_url: str
    session: requests.Session
    me: TestUser
    other: TestUser

    def serve_while(self, call: Callable[[], T]) -> T:
        """Run a blocking call in a thread while the server's event loop runs (and so answers it)."""
        loop = self.client._loop
        result: T = loop.run_until_complete(loop.run_in_executor(None, call))
        return result

    def new_user(self) -> None:
        self.me = create_user(self.api)

    def group_id(self) -> str:
        """A group whose lord is the current user, created for the case."""
        return create_group(self.api, self.me, group_name="fuzzed")


@pytest.fixture
def fuzz_target(other_app: OtherApp) -> Iterator[Target]:
    with other_app() as client, requests.Session() as session:
        api = Api(client)
        base_url = f"http://{client.host}:{client.port}"
        yield Target(client, api, base_url, session, me=create_user(api), other=create_user(api, login=False))


@pytest.fixture
def fuzz_schema(fuzz_target: Target) -> BaseSchema:
    _, response = fuzz_target.client.get("/docs/openapi.json")
    assert response.status == 200
    return schemathesis.openapi.from_dict(response.json, config=SchemathesisConfig.from_dict(CONFIG))


schema = schemathesis.pytest.from_fixture("fuzz_schema")


@pytest.mark.slow
@schema.parametrize()
@schema.given(whose=st.sampled_from(["generated", "own", "other"]))
def test_every_route_answers_as_its_openapi_document_says(case: Any, whose: str, fuzz_target: Target) -> None:
    # Assigned, not changed in place, so that Schemathesis re-labels the case: with a valid token
    # (or the caller's own id) a case generated as invalid may have become a valid request.
    auth = {"Authorization": fuzz_target.me.token}
    case.headers = {**case.headers, **auth}
    # Generated values rarely name a real account: half the cases use the caller's own account
    # (updates, deletion, a successful login) or another user's (refused with 403).
    user = {"own": fuzz_target.me, "other": fuzz_target.other}.get(whose)
    if user is not None and "user_id" in case.path_parameters:
        case.path_parameters = {**case.path_parameters, "user_id": user.id}
    if user is not None and "group_id" in case.path_parameters:
        # A group of the caller's own, so the group routes get past their 404.
        case.path_parameters = {**case.path_parameters, "group_id": fuzz_target.group_id()}
    if user is not None and case.path == "/api/login" and isinstance(case.body, dict):
        case.body = {**case.body, "chat_id": user.chat_id, "password": user.password}
    base_url, session = fuzz_target.base_url, fuzz_target.session
    response = fuzz_target.serve_while(lambda: case.call(base_url=base_url, session=session))
    revoked = case.path == "/api/logout" and response.status_code == 204
    deleted = case.method == "DELETE" and response.status_code == 200
    try:
        assert not any(prefix in response.text for prefix in BCRYPT_PREFIXES), "a password hash in a response"
        # Some checks send requests of their own (without the token, with other methods). Passing
        # the token here tells them it is a real one, which they then try to do without.
        fuzz_target.serve_while(lambda: case.validate_response(response, headers=auth))
    finally:
        if revoked or deleted:
            # The token just stopped working: a new user keeps the cases still to come authenticated.
            fuzz_target.new_user()
