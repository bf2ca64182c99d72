"""The data store: a real MongoDB from `MONGODB_URI`, or the embedded nx-27017 server run as a child."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from beanie import init_beanie
from pymongo import AsyncMongoClient, MongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from chat_api.config import Settings
from chat_api.documents import DOCUMENT_MODELS

log = logging.getLogger("chat_api.store")

# Bounded waits so that a store that is down turns into a prompt 503, never a hung request.
CLIENT_OPTIONS: dict[str, Any] = {
    "tz_aware": True,
    "serverSelectionTimeoutMS": 5000,
    "connectTimeoutMS": 5000,
    "socketTimeoutMS": 20000,
    "appname": "chat_api",
}
STORE_FILE = "chat.db"
STATE_FILE = "nx-27017.json"
LOCK_FILE = "nx-27017.lock"


def describe_uri(uri: str) -> str:
    """The scheme and hosts of a MongoDB URI, without user name or password, for logs.

    Parsed by hand: PyMongo's parser resolves `mongodb+srv` names through DNS.
    """
    scheme, separator, rest = uri.partition("://")
    if not separator:
        return "mongodb (unparsable URI)"
    hosts = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{hosts}"


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) still answers signal 0. Every thread
    # is looked at: a process whose main thread has ended can still be running others.
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        states = [(task / "stat").read_text().rsplit(")", 1)[1].split()[0] for task in tasks]
    except (OSError, IndexError):
        return True
    return any(state != "Z" for state in states)


def _pings(uri: str, timeout_ms: int = 500) -> bool:
    client: MongoClient[dict[str, Any]] = MongoClient(
        uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
    )
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def _is_nx_27017(pid: int) -> bool:
    """Alive and an nx-27017 server, not some other process that reused the pid."""
    if not pid_alive(pid):
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the pid
    return b"nx-27017" in command or b"nx_27017" in command


def _wait_for_ping(uri: str, timeout: float, still_running: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + timeout
    while not _pings(uri, timeout_ms=500):
        if not still_running() or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@dataclass
class EmbeddedStore:
    """The nx-27017 server for one data folder, shared by every process that uses the folder.

    Two servers on one SQLite file would fight over it (and nx-27017's default pid file is
    one per machine), so `<data_dir>/nx-27017.json` records the server's pid and port and the
    pids of the processes using it, and is only changed under a lock on
    `<data_dir>/nx-27017.lock`. A process joins the running server, or starts one if none
    runs; the last live user to leave stops it. Users that died without leaving (SIGKILL)
    are dropped whenever another joins or leaves, so a server is neither stopped under a
    live user (a script finishing while the app runs) nor left running after its last one.
    """

    data_dir: Path
    port: int = 0
    pid: int | None = None
    process: subprocess.Popen[bytes] | None = None
    joined: bool = False

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    @property
    def db_file(self) -> Path:
        return self.data_dir / STORE_FILE

    @property
    def _state_file(self) -> Path:
        return self.data_dir / STATE_FILE

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.data_dir / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_state(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self._state_file.read_text())
            return {"pid": int(state["pid"]), "port": int(state["port"]), "users": [int(u) for u in state["users"]]}
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_state(self, users: list[int]) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": self.pid, "port": self.port, "users": users}))
        tmp.replace(self._state_file)

    def start(self, timeout: float = 20.0, attempts: int = 3) -> EmbeddedStore:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._locked():
            state = self._read_state()
            if state is not None and _is_nx_27017(state["pid"]):
                self.pid, self.port = state["pid"], state["port"]
                # It serves one request at a time, so a busy server can miss a short ping:
                # wait for it rather than start a second server on the same file.
                if not _wait_for_ping(self.uri, timeout, lambda: pid_alive(state["pid"])):
                    raise RuntimeError(f"the embedded store (pid {self.pid}) runs but does not answer on {self.uri}")
                users = [pid for pid in state["users"] if pid_alive(pid)]
                if users:
                    log.info("joined the embedded store (pid %s) in use by %s", self.pid, users)
                else:
                    log.warning(
                        "took over the embedded store (pid %s) left running by a process that is gone", self.pid
                    )
            else:
                for attempt in range(1, attempts + 1):
                    try:
                        self._spawn(timeout)
                        break
                    except RuntimeError:
                        # The free port can be taken between choosing it and the server binding it.
                        if attempt == attempts:
                            raise
                users = []
            self._write_state([*users, os.getpid()])
            self.joined = True
        return self

    def _spawn(self, timeout: float) -> None:
        self.port = free_loopback_port()
        command = [
            _nx_27017_command(),
            "--db", str(self.db_file),
            "--host", "127.0.0.1",
            "-p", str(self.port),
            "--pid-file", str(self.data_dir / "nx-27017.pid"),
            "--log-file", str(self.data_dir / "nx-27017.log"),
        ]  # fmt: skip
        # Its own session: a Ctrl-C in the terminal reaches the API, which then stops the
        # store after the last request has been answered, instead of both at once.
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.process, self.pid = process, process.pid
        if not _wait_for_ping(self.uri, timeout, lambda: process.poll() is None):
            if process.poll() is not None:
                raise RuntimeError(
                    f"nx-27017 exited with code {process.returncode} on start; see {self.data_dir / 'nx-27017.log'}"
                )
            self._terminate(timeout=5)
            raise RuntimeError(f"nx-27017 did not answer ping within {timeout:.0f} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Leave the store; the last live user stops the server."""
        if not self.joined:
            return
        with self._locked():
            state = self._read_state()
            users = [pid for pid in state["users"] if pid_alive(pid)] if state else []
            with contextlib.suppress(ValueError):
                users.remove(os.getpid())
            if state is not None and state["pid"] == self.pid and users:
                self._write_state(users)
            else:
                self._terminate(timeout)
                self._state_file.unlink(missing_ok=True)
            self.joined = False

    def _terminate(self, timeout: float) -> None:
        pid = self.pid
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # nx-27017 closes SQLite cleanly on SIGTERM
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # poll() reaps a child of ours; a server started by another process is not one
            if (self.process.poll() is not None) if self.process else not pid_alive(pid):
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if self.process:
            self.process.wait()


def _nx_27017_command() -> str:
    beside_python = Path(sys.executable).parent / "nx-27017"
    return str(beside_python) if beside_python.exists() else "nx-27017"


def new_client(uri: str) -> AsyncMongoClient[dict[str, Any]]:
    return AsyncMongoClient(uri, **CLIENT_OPTIONS)


async def open_database(uri: str, db_name: str) -> AsyncDatabase[dict[str, Any]]:
    """Connect and bind the Beanie documents; indexes are managed by chat_api.indexes."""
    client = new_client(uri)
    database = client[db_name]
    await init_beanie(database=database, document_models=DOCUMENT_MODELS, skip_indexes=True)
    return database


def store_label(settings: Settings, uri: str) -> str:
    if settings.store_kind == "embedded":
        return f"embedded nx-27017 at {uri} (data in {settings.data_dir / STORE_FILE})"
    return f"MongoDB at {describe_uri(uri)}, database {settings.mongodb_db!r}"
