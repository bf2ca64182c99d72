"""The processes a benchmark run needs: an embedded store per data folder, the app, the limit, the seed."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import httpx

from chat_api.store.embedded import EmbeddedStore, free_loopback_port
from tests.helpers import SETTING_NAMES, stop_server  # the settings a developer may have exported

REPO = Path(__file__).resolve().parent.parent
# base URL -> (server's main pid, its store's pid): whose CPU time a run of wrk is charged to
PIDS: dict[str, tuple[int, int]] = {}
# Far above anything a run sends from its one address: the budgets are counted (a store command
# each, as in production) but never refuse.
UNLIMITED = "1000000000/1d"
RATE_LIMITS = {
    name: UNLIMITED
    for name in ("RATE_LIMIT_LOGIN", "RATE_LIMIT_LOGIN_ACCOUNT", "RATE_LIMIT_REGISTER", "RATE_LIMIT_CHECKS")
}


@dataclass
class Site:
    """One data folder with its own embedded store, in a temporary folder (never ./data).

    The benchmark joins the store first, so it stays up while the app, the limit and the
    seed come and go; the last one to leave stops it.
    """

    root: Path
    env: dict[str, str]
    store: EmbeddedStore

    @classmethod
    @contextmanager
    def open(cls, root: Path, jwt_secret: str, bcrypt_rounds: int) -> Iterator[Site]:
        root.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
        env.update(
            {
                "PYTHONPATH": str(REPO),
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
                "DATA_DIR": str(root / "data"),
                "JWT_SECRET": jwt_secret,
                "BCRYPT_ROUNDS": str(bcrypt_rounds),
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
                **RATE_LIMITS,
            }
        )
        store = EmbeddedStore(root / "data").start()
        try:
            yield cls(root, env, store)
        finally:
            store.stop()

    def seed(self, users: int) -> None:
        # The working directory is the temporary folder, so no developer's .env is read.
        process = subprocess.Popen(
            [sys.executable, "-m", "scripts.seed", "--users", str(users)],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = process.communicate(timeout=600)
        except BaseException:
            # Gone before this returns (Ctrl-C included): the store counts it as a user until then,
            # and would be left running for it.
            process.kill()
            process.wait()
            raise
        if process.returncode != 0:
            raise RuntimeError(f"scripts.seed failed: {err.strip()}")
        print(f"  {out.strip().splitlines()[-1]}", flush=True)

    @contextmanager
    def serve(self, name: str, module: str, ready_path: str, **env: str) -> Iterator[str]:
        """Run `python -m <module> --port N` (with `env` added to the site's) until the block ends; yields its
        base URL."""
        port = free_loopback_port()
        log = (self.root / f"{name}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", module, "--port", str(port)],
            cwd=self.root,
            env={**self.env, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(base + ready_path, process, name, self.root / f"{name}.log")
            assert self.store.pid is not None
            PIDS[base] = (process.pid, self.store.pid)
            yield base
        finally:
            PIDS.pop(base, None)
            stop_server(process)
            log.close()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process and all its descendants."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = [
                int(child) for task in Path(f"/proc/{current}/task").iterdir()
                for child in (task / "children").read_text().split()
            ]  # fmt: skip
        except OSError:
            continue  # gone, or no /proc: counts nothing
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
        pending += children
    return total


def wait_until_ready(url: str, process: subprocess.Popen[bytes], name: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}; see {log}:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not answer {url} within {timeout:.0f} s; see {log}")
        time.sleep(0.2)


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A real redis-server on a free loopback port, nothing persisted, until the block ends; yields its URL."""
    import redis

    folder.mkdir(parents=True, exist_ok=True)
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found: `make bench` installs it (apt-get install redis-server)")
    port = free_loopback_port()
    log = (folder / "redis.log").open("w")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {process.returncode}: {(folder / 'redis.log').read_text()}"
                )
            with contextlib.suppress(redis.RedisError):
                if redis.Redis.from_url(url, socket_timeout=1).ping():
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer within 20 s")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def redis_subscribers(url: str) -> int:
    """How many connections are subscribed to the app's event channel: one per process that fans out through Redis."""
    import redis

    from chat_api.realtime.broker import CHANNEL

    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        # The sync client's reply: [(channel, subscribers)] (its stubs also allow the async client's awaitable).
        reply = cast(list[tuple[bytes, int]], client.pubsub_numsub(CHANNEL))
        return sum(int(count) for _, count in reply)
    finally:
        client.close()
