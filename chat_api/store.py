"""The data store: a real MongoDB from `MONGODB_URI`, or the embedded nx-27017 server run as a child."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) still answers signal 0.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


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


@dataclass
class EmbeddedStore:
    """The nx-27017 server for one data folder.

    nx-27017 keeps a single pid file per machine unless told otherwise, and two servers on
    one SQLite file would fight over it, so the server's pid, port and owner are kept in
    `<data_dir>/nx-27017.json`. A second user of the same folder (a script while the app
    runs) attaches to the running server instead of starting another, and only the process
    that owns the server stops it.
    """

    data_dir: Path
    port: int = 0
    owned: bool = False
    pid: int | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    @property
    def db_file(self) -> Path:
        return self.data_dir / STORE_FILE

    @property
    def _state_file(self) -> Path:
        return self.data_dir / STATE_FILE

    def start(self, timeout: float = 20.0, attempts: int = 3) -> EmbeddedStore:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._attach():
            return self
        for attempt in range(1, attempts + 1):
            try:
                self._spawn(timeout)
                break
            except RuntimeError:
                # The free port can be taken between choosing it and the server binding it.
                if attempt == attempts:
                    raise
        self._write_state()
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
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid, self.owned = self.process.pid, True
        deadline = time.monotonic() + timeout
        while not _pings(self.uri, timeout_ms=200):
            if self.process.poll() is not None:
                self.owned = False
                raise RuntimeError(
                    f"nx-27017 exited with code {self.process.returncode} on start; "
                    f"see {self.data_dir / 'nx-27017.log'}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nx-27017 did not answer ping within {timeout:.0f} s")
            time.sleep(0.05)

    def _write_state(self) -> None:
        self._state_file.write_text(json.dumps({"pid": self.pid, "port": self.port, "owner": os.getpid()}))

    def _attach(self) -> bool:
        try:
            state = json.loads(self._state_file.read_text())
            pid, port, owner = int(state["pid"]), int(state["port"]), int(state["owner"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
        self.port, self.pid = port, pid
        if not (_pid_alive(pid) and _pings(self.uri)):
            return False
        # A server left behind by an API process that was killed is adopted, so that it is
        # stopped when this process ends rather than running forever.
        if not _pid_alive(owner):
            self.owned = True
            self._write_state()
            log.warning("adopted the embedded store (pid %s) left running by process %s, which is gone", pid, owner)
        else:
            log.info("joined the embedded store (pid %s) run by process %s", pid, owner)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        if not self.owned or self.pid is None:
            return
        pid = self.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # nx-27017 closes SQLite cleanly on SIGTERM
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # poll() reaps our own child; an adopted server is not our child
            if (self.process.poll() is not None) if self.process else not _pid_alive(pid):
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if self.process:
                self.process.wait()
        self._state_file.unlink(missing_ok=True)
        self.owned = False


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
