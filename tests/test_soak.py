"""A minute of mixed traffic from a second process: no errors, nothing acknowledged lost, latency and memory steady."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.factories import TestUser, auth_headers, create_user, make_friends
from tests.helpers import REPO, Api
from tests.soak import Conversation, Soak, SoakUser


@pytest.mark.slow
@pytest.mark.no_store
def test_soak_of_a_minute_loses_nothing_and_stays_steady(tmp_path: Path) -> None:
    report_file = tmp_path / "soak.json"
    run = subprocess.run(
        [sys.executable, "-m", "tests.soak", "--duration", "60", "--report", str(report_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report_file.exists(), run.stdout + run.stderr
    report = json.loads(report_file.read_text())
    assert report["requests"] > 1000, report
    for operation, figures in report["operations"].items():
        assert figures["requests"] > 0, f"the soak never sent {operation}"
    # Each check separately, so that a failure names what went wrong; the report holds the figures.
    assert report["checks"]["no_5xx_or_unanswered"], report
    assert report["checks"]["no_unexpected_status"], report
    assert report["problems"] == [], report
    assert report["checks"]["p99_last_within_1.5x_first"], report
    assert report["checks"]["rss_growth_under_10_percent"], report
    assert run.returncode == 0, run.stdout + run.stderr


def test_soak_read_back_reports_every_lost_or_wrong_write(api: Api) -> None:
    """The soak's verdict is only as good as its read-back: a missing user, a stale profile, a lost password change
    and a doubled registration must each be reported."""
    kept, stale, reset = (create_user(api) for _ in range(3))
    assert (
        api.put(f"/api/users/{stale.id}", headers=auth_headers(stale.token), json={"personality": "old"}).status == 204
    )
    soak = Soak(f"http://127.0.0.1:{api.client.port}", duration=0)

    def acknowledged(user: TestUser, **changes: Any) -> SoakUser:
        fields = {"password": user.password, "personality": None, "token": user.token or "", **changes}
        return SoakUser(user.id, user.chat_id, user.email, **fields)

    soak.users = [
        acknowledged(kept),
        acknowledged(stale, personality="new"),  # as if the PUT of "new" got its 204 and was lost
        acknowledged(reset, password="pw-acknowledged-but-lost"),
        SoakUser("6b04b2e4222101c7f558afa1", 99, "gone@example.com", "pw-never-stored"),
    ]
    problems = api.client._run(soak.read_back())

    assert len(problems) == 4, problems
    assert "6b04b2e4222101c7f558afa1: GET answered 404" in problems[0] + problems[1] + problems[2]
    assert any(f"user {stale.id}: expected" in problem and "'new'" in problem for problem in problems)
    assert any(f"user {reset.id}: login" in problem for problem in problems)
    assert any(problem.startswith("3 users stored for 4 acknowledged") for problem in problems)


def test_soak_read_back_reports_a_lost_changed_or_doubled_message(api: Api) -> None:
    """The read-back of direct messages: an acknowledged message that is missing or whose text changed, and more
    messages stored than were sent, are each reported; a history that matches is not."""
    a, b, c = (create_user(api) for _ in range(3))
    make_friends(api, a, b)
    make_friends(api, a, c)
    sent = {}
    for text in ("one", "two"):
        response = api.post("/api/user-message", headers=a.headers, json={"to_id": b.id, "msg": text})
        assert response.status == 201
        sent[response.json["user_message_id"]] = text
    extra = api.post("/api/user-message", headers=a.headers, json={"to_id": c.id, "msg": "unreported"})
    assert extra.status == 201
    soak = Soak(f"http://127.0.0.1:{api.client.port}", duration=0)

    def soak_user(user: TestUser) -> SoakUser:
        return SoakUser(user.id, user.chat_id, user.email, user.password, token=user.token)

    first_id, second_id = sent
    faithful = Conversation(soak_user(a), soak_user(b), acknowledged=dict(sent))
    lost = "6b04b2e4222101c7f558afa1"
    lossy = Conversation(soak_user(a), soak_user(b), acknowledged={first_id: "one", second_id: "changed", lost: "x"})
    doubled = Conversation(soak_user(a), soak_user(c), acknowledged={})

    def problems_of(conversation: Conversation) -> list[str]:
        soak.users, soak.conversations = [], {("a", "b"): conversation}
        soak.users = [soak_user(a)]
        return [p for p in api.client._run(soak.read_back()) if p.startswith("history")]

    assert problems_of(faithful) == []
    lossy_problems = problems_of(lossy)
    assert len(lossy_problems) == 2, lossy_problems
    assert any(second_id in p for p in lossy_problems)
    assert any(lost in p for p in lossy_problems)
    assert problems_of(doubled) == [f"history {a.id}/{c.id}: 1 messages for 0 acknowledged"]
