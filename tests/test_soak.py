"""A minute of mixed traffic from a second process: no errors, nothing acknowledged lost, latency and memory steady."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO


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
