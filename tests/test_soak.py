"""A minute of mixed traffic from a second process: no errors, nothing acknowledged lost, latency and memory steady."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, Api, TestUser, auth_headers, create_user
from tests.soak import Soak, SoakUser


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
