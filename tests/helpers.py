"""Test helpers: an HTTP client that checks every answer for leaked secrets, and running the app or a script as a
process. The data factories (users, friendships, groups, messages) are in tests/factories.py."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from sanic_testing.reusable import ReusableClient
from sanic_testing.testing import TestingResponse

from chat_api.store.embedded import free_loopback_port

BCRYPT_PREFIXES = ("$2b$", "$2a$", "$2y$")


class Api:
    """Real HTTP to the app under test. Every response body of the whole suite passes through
    `check_no_secrets`, so any route that leaks a password or its hash fails the test that hit it."""

    def __init__(self, client: ReusableClient):
        self.client = client
        self.passwords: set[str] = set()

    def check_no_secrets(self, response: httpx.Response) -> None:
        body = response.text
        for prefix in BCRYPT_PREFIXES:
            assert prefix not in body, f"a bcrypt hash in the body of {response.request.url}"
        for password in self.passwords:
            assert password not in body, f"a plain password in the body of {response.request.url}"

    def request(self, method: str, path: str, **kwargs: Any) -> TestingResponse:
        _, response = getattr(self.client, method)(path, **kwargs)
        assert response is not None
        self.check_no_secrets(response)
        return response

    def get(self, path: str, **kwargs: Any) -> TestingResponse:
        return self.request("get", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> TestingResponse:
        return self.request("post", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> TestingResponse:
        return self.request("put", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> TestingResponse:
        return self.request("patch", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> TestingResponse:
        return self.request("delete", path, **kwargs)

    def options(self, path: str, **kwargs: Any) -> TestingResponse:
        return self.request("options", path, **kwargs)

    def preflight(self, path: str, origin: str, request_headers: str | None = None) -> TestingResponse:
        """The CORS preflight a browser sends from `origin` before a GET with `request_headers`."""
        headers = {"Origin": origin, "Access-Control-Request-Method": "GET"}
        if request_headers is not None:
            headers["Access-Control-Request-Headers"] = request_headers
        return self.options(path, headers=headers)

    def concurrently(self, requests: Iterable[tuple[str, str, dict[str, Any]]]) -> list[httpx.Response]:
        """Send requests at the same time, each over its own connection."""

        async def send_all() -> list[httpx.Response]:
            base = f"http://{self.client.host}:{self.client.port}"
            async with httpx.AsyncClient(base_url=base, limits=httpx.Limits(max_keepalive_connections=0)) as http:
                return list(await asyncio.gather(*(http.request(method, path, **kw) for method, path, kw in requests)))

        responses: list[httpx.Response] = self.client._loop.run_until_complete(send_all())
        for response in responses:
            self.check_no_secrets(response)
        return responses


class ProcessApi(Api):
    """The same checked client over real HTTP to a server process at `base_url` (`running_server`), so the factories
    of tests/factories.py work against it too."""

    def __init__(self, base_url: str, passwords: set[str] | None = None) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=10)
        self.passwords = passwords if passwords is not None else set()

    def request(self, method: str, path: str, **kwargs: Any) -> TestingResponse:
        answer = self.http.request(method.upper(), path, **kwargs)
        response = TestingResponse(
            answer.status_code, headers=answer.headers, content=answer.content, request=answer.request
        )
        self.check_no_secrets(response)
        return response

    def close(self) -> None:
        self.http.close()


def assert_error(response: TestingResponse, status: int, message: str) -> None:
    """An error answer: its status, and a body that is exactly its message."""
    assert response.status == status
    assert response.json == {"message": message}


REPO = Path(__file__).resolve().parent.parent
SETTING_NAMES = (
    "ENV", "MONGODB_URI", "MONGODB_DB", "DATA_DIR", "JWT_SECRET", "JWT_TTL", "BCRYPT_ROUNDS",
    "CORS_ORIGINS", "HOST", "PORT", "WEB_CONCURRENCY", "LOG_LEVEL", "LOG_FORMAT",
    "RATE_LIMITS", "RATE_LIMIT_LOGIN", "RATE_LIMIT_LOGIN_ACCOUNT", "RATE_LIMIT_LOGIN_FAILURE_COST",
    "RATE_LIMIT_REGISTER", "RATE_LIMIT_CHECKS", "PROXIES_COUNT", "REAL_IP_HEADER", "FORWARDED_SECRET",
    "STORE_TIMEOUT", "SHUTDOWN_TIMEOUT", "PRESENCE_GRACE", "WS_SEND_BUFFER", "EVENT_POLL_INTERVAL",
    "REDIS_URL", "EVENT_PARTITIONS", "EVENT_GAP_WAIT", "STORE_POOL_SIZE", "METRICS_TOKEN", "METRICS_DIR",
)  # fmt: skip


# For process-level tests that send more than a client would: the limiter stays on (its counters are part of what
# they exercise), with budgets far above what they send.
GENEROUS_LIMITS_ENV = {
    "RATE_LIMIT_LOGIN": "100000000/1h",
    "RATE_LIMIT_LOGIN_ACCOUNT": "100000000/1h",
    "RATE_LIMIT_REGISTER": "100000000/1h",
    "RATE_LIMIT_CHECKS": "100000000/1h",
}


def subprocess_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    """An environment for running the app or a script as a user would, on a store of the
    test's own: none of the caller's settings leak in, and the working directory (where
    `.env` is read) should be a temporary folder."""
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "DATA_DIR": str(data_dir),
            "BCRYPT_ROUNDS": "4",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


def run_script(module: str, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def wait_for_health(
    base_url: str, timeout: float = 30.0, process: subprocess.Popen[str] | None = None
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}")
        try:
            response = httpx.get(f"{base_url}/healthz", timeout=2)
            if response.status_code == 200:
                body: dict[str, Any] = response.json()
                return body
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{base_url}/healthz did not answer 200 within {timeout} s")
        time.sleep(0.2)


def stop_server(process: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """SIGTERM to the main process, as `kill` would: signalling the whole group also hits Sanic's own manager
    process, and the main one can then exit with a BrokenPipe. The group is killed if it is not gone in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def serve_and_log(tmp_path: Path, log_format: str, command: list[str], scenario: Callable[[int], None]) -> list[str]:
    """Run the server `command` (a real process, DEBUG logs in `log_format`, a store of its own under
    `tmp_path`) until it answers, play `scenario(port)` against it, stop it, and return every line it logged."""
    port = free_loopback_port()
    env = subprocess_env(tmp_path / "data", PORT=str(port), LOG_LEVEL="DEBUG", LOG_FORMAT=log_format)
    stdout, stderr = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with stdout.open("w") as out, stderr.open("w") as err:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=out, stderr=err, text=True, start_new_session=True
        )
        try:
            wait_for_health(f"http://127.0.0.1:{port}", process=process)
            scenario(port)
        finally:
            stop_server(process)
    assert process.returncode == 0, f"exit code {process.returncode}; stderr:\n{stderr.read_text()}"
    return [line for path in (stdout, stderr) for line in path.read_text().splitlines() if line.strip()]


def stop_servers(started: Sequence[tuple[subprocess.Popen[str], int]]) -> None:
    """`stop_server` on each at the same time: their graceful shutdowns overlap."""
    with ThreadPoolExecutor() as pool:
        list(pool.map(stop_server, [server for server, _ in started]))


@contextmanager
def running_server(tmp_path: Path, **settings: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`python -m chat_api` as a real process (its output in tmp_path/server.log, a store of its own, the
    limiter on with generous budgets, `settings` as environment variables), up and answering; stopped after."""
    with running_servers([tmp_path], **settings) as [started]:
        yield started


@contextmanager
def running_servers(folders: Sequence[Path], **settings: str) -> Iterator[list[tuple[subprocess.Popen[str], int]]]:
    """One `running_server` per folder, each on its own port, started and stopped together (start-ups overlap)."""
    started: list[tuple[subprocess.Popen[str], int]] = []
    with ExitStack() as stack:
        stack.callback(stop_servers, started)
        for folder in folders:
            port = free_loopback_port()
            env = subprocess_env(folder / "data", PORT=str(port), **GENEROUS_LIMITS_ENV, **settings)
            log = stack.enter_context((folder / "server.log").open("w"))
            server = subprocess.Popen(
                [sys.executable, "-m", "chat_api"], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                text=True, start_new_session=True,
            )  # fmt: skip
            started.append((server, port))
        for server, port in started:
            wait_for_health(f"http://127.0.0.1:{port}", process=server)
        yield started
