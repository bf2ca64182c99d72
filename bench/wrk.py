"""Runs wrk with bench/lua/requests.lua and reads back its one-line JSON summary."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).parent / "lua" / "requests.lua"
# A request unanswered after this long counts as a timeout. Logins queue for the bcrypt
# thread by design: 8 clients logging in at once on a loaded 2-core machine wait seconds.
TIMEOUT = 30


@dataclass(frozen=True)
class Load:
    """What wrk sends: request lines ("path" or "path<TAB>json body"), cycled through."""

    base_url: str
    lines: Sequence[str]
    method: str = "GET"
    expect: int = 200
    token: str | None = None
    delay_ms: int = 0  # a pause before each next request on a connection: paces the load


@dataclass(frozen=True)
class Run:
    requests: int
    seconds: float
    unexpected: int  # answers with another status than the expected one
    last_unexpected: int  # the status of the last of those, to say what went wrong
    socket_errors: int  # connect, read, write errors and timeouts: requests never answered
    timeouts: int
    p50_ms: float
    p99_ms: float
    server_cpu_s: float = 0.0  # CPU time of the server (all its processes) during the run
    store_cpu_s: float = 0.0  # and of its store

    @property
    def server_cpu_ms(self) -> float:
        """The server's CPU time per answer."""
        return self.server_cpu_s * 1000 / max(self.requests, 1)

    @property
    def store_cpu_ms(self) -> float:
        return self.store_cpu_s * 1000 / max(self.requests, 1)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def bad(self) -> int:
        return self.unexpected + self.socket_errors


class Wrk:
    """One wrk process for `seconds`; `start` runs it in the background, `result` waits for it."""

    def __init__(self, load: Load, seconds: float, connections: int, workdir: Path):
        lines = tempfile.NamedTemporaryFile("w", dir=workdir, suffix=".txt", delete=False)  # noqa: SIM115
        with lines:
            lines.write("\n".join(load.lines) + "\n")
        self.lines_file = Path(lines.name)
        env = {
            **os.environ,
            "BENCH_LINES": str(self.lines_file),
            "BENCH_METHOD": load.method,
            "BENCH_EXPECT": str(load.expect),
            "BENCH_TOKEN": load.token or "",
            "BENCH_DELAY_MS": str(load.delay_ms),
        }
        # One wrk thread: it is enough for these rates and leaves the cores to the server.
        self.command = [
            "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", f"{TIMEOUT}s",
            "-s", str(LUA), load.base_url,
        ]  # fmt: skip
        self.env = env
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> Wrk:
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        return self

    def result(self) -> Run:
        assert self.process is not None
        try:
            out, err = self.process.communicate(timeout=120)
        finally:
            self.lines_file.unlink(missing_ok=True)
        summary = next((line for line in out.splitlines() if line.startswith("BENCH ")), None)
        if self.process.returncode != 0 or summary is None:
            raise RuntimeError(f"wrk failed ({self.process.returncode}): {err.strip() or out.strip()}")
        data = json.loads(summary.removeprefix("BENCH "))
        return Run(
            requests=data["requests"],
            seconds=data["duration_us"] / 1e6,
            unexpected=data["unexpected"],
            last_unexpected=data["last_unexpected"],
            socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
            timeouts=data["timeout"],
            p50_ms=data["p50_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
        )


def run_wrk(load: Load, seconds: float, connections: int, workdir: Path) -> Run:
    return Wrk(load, seconds, connections, workdir).start().result()
