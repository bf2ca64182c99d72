"""The embedded store's supervisor: nx-27017 as a child process, shared by every app and script on one data folder."""

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
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.errors import PyMongoError

log = logging.getLogger("chat_api.store")

STORE_FILE = "chat.db"
STATE_FILE = "nx-27017.json"
LOCK_FILE = "nx-27017.lock"
PID_FILE = "nx-27017.pid"


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


def _port_in_use(port: int) -> bool:
    """Whether a process listens on the loopback port (connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


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

    A user that calls `supervise()` (the app) watches the server and starts it again, on the
    same data and the same port, when it dies: the clients of every process keep their URI
    and reconnect by themselves.
    """

    data_dir: Path
    port: int = 0
    pid: int | None = None
    process: subprocess.Popen[bytes] | None = None
    joined: bool = False
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _supervisor: threading.Thread | None = field(default=None, repr=False)

    START_TIMEOUT = 20.0
    WATCH_INTERVAL = 0.25  # how soon a dead server is noticed
    RESTART_DELAY_MIN = 0.5  # doubled after each restart, up to the maximum...
    RESTART_DELAY_MAX = 10.0
    STABLE_AFTER = 30.0  # ...and back to the minimum once a server has stayed up this long

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

    def start(self, timeout: float = START_TIMEOUT, attempts: int = 3) -> EmbeddedStore:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._locked():
            state = self._read_state()
            users = [pid for pid in state["users"] if pid_alive(pid)] if state else []
            if state is not None and _is_nx_27017(state["pid"]):
                self.pid, self.port = state["pid"], state["port"]
                # It serves one request at a time, so a busy server can miss a short ping:
                # wait for it rather than start a second server on the same file.
                if not _wait_for_ping(self.uri, timeout, lambda: pid_alive(state["pid"])):
                    raise RuntimeError(f"the embedded store (pid {self.pid}) runs but does not answer on {self.uri}")
                if users:
                    log.info("joined the embedded store (pid %s) in use by %s", self.pid, users)
                else:
                    log.warning(
                        "took over the embedded store (pid %s) left running by a process that is gone", self.pid
                    )
            elif state is not None and users and not _port_in_use(state["port"]):
                # The server died under processes that still use it: their clients know only
                # its port, so it comes back there (as their supervisor would do it). With the
                # port taken, those "users" are most likely pids reused since (a reboot).
                self._spawn(timeout, port=state["port"])
                log.warning("started the embedded store again on port %s, used by %s", self.port, users)
            else:
                users = []
                for attempt in range(1, attempts + 1):
                    try:
                        self._spawn(timeout)
                        break
                    except RuntimeError:
                        # The free port can be taken between choosing it and the server binding it.
                        if attempt == attempts:
                            raise
            self._write_state([*users, os.getpid()])
            self.joined = True
        return self

    def _spawn(self, timeout: float, port: int | None = None) -> None:
        """Start a server (on `port`, else a free one); the caller holds the lock and knows none runs."""
        if port is not None and _port_in_use(port):
            raise RuntimeError(f"port {port} is taken by another process")
        self.port = port or free_loopback_port()
        # nx-27017 refuses to start while its pid file names a live process, and signal 0
        # cannot tell a dead server's unreaped zombie (or a reused pid) from a live one.
        (self.data_dir / PID_FILE).unlink(missing_ok=True)
        command = [
            _nx_27017_command(),
            "--db", str(self.db_file),
            "--host", "127.0.0.1",
            "-p", str(self.port),
            "--journal-mode", "WAL",  # its default, stated: durability must not change under us
            "--pid-file", str(self.data_dir / PID_FILE),
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
            self._terminate(process.pid, timeout=5)
            raise RuntimeError(f"nx-27017 did not answer ping within {timeout:.0f} s")

    def supervise(self) -> None:
        """Watch the server from a thread of this process and start it again when it dies."""
        assert self.joined, "start() first"
        self._stopping.clear()
        self._supervisor = threading.Thread(target=self._watch, name="nx-27017-supervisor", daemon=True)
        self._supervisor.start()

    def _server_running(self) -> bool:
        pid = self.pid
        if pid is None:
            return False
        if self.process is not None and self.process.pid == pid:
            return self.process.poll() is None  # reaps our own child once it has exited
        return _is_nx_27017(pid)

    def _watch(self) -> None:
        delay = self.RESTART_DELAY_MIN
        up_since = time.monotonic()
        while not self._stopping.wait(self.WATCH_INTERVAL):
            if self._server_running():
                if time.monotonic() - up_since >= self.STABLE_AFTER:
                    delay = self.RESTART_DELAY_MIN
                continue
            log.error(
                "the embedded store (pid %s, port %s) has %s; starting it again in %.1f s",
                self.pid, self.port, self._how_it_ended(), delay,
            )  # fmt: skip
            while not self._stopping.wait(delay):
                delay = min(delay * 2, self.RESTART_DELAY_MAX)
                try:
                    self._restart()
                except Exception as error:  # whatever failed, keep trying: the app needs its store
                    log.error("could not start the embedded store again: %s; next attempt in %.1f s", error, delay)
                    continue
                up_since = time.monotonic()
                break

    def _how_it_ended(self) -> str:
        code = self.process.returncode if self.process is not None and self.process.pid == self.pid else None
        if code is None:
            return "exited"
        if code < 0:
            return f"been killed by {signal.Signals(-code).name}"
        return f"exited with code {code}"

    def _restart(self) -> None:
        with self._locked():
            if self._stopping.is_set():
                return
            state = self._read_state()
            if state is not None and state["pid"] != self.pid and _is_nx_27017(state["pid"]):
                # Another process using the folder has started it again already.
                self.pid, self.process = state["pid"], None
                log.warning("the embedded store was started again by another process (pid %s)", self.pid)
                if state["port"] != self.port:
                    log.error("it listens on port %s, not %s: restart the app to reach it", state["port"], self.port)
                return
            users = [pid for pid in state["users"] if pid_alive(pid)] if state else []
            if os.getpid() not in users:
                users.append(os.getpid())
            self._spawn(self.START_TIMEOUT, port=self.port)
            self._write_state(users)
            log.warning("the embedded store is running again (pid %s) on %s", self.pid, self.uri)

    def stop(self, timeout: float = 10.0) -> None:
        """Leave the store; the last live user stops the server. A deliberate stop is never restarted."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join()
            self._supervisor = None
        if not self.joined:
            return
        with self._locked():
            state = self._read_state()
            users = [pid for pid in state["users"] if pid_alive(pid)] if state else []
            with contextlib.suppress(ValueError):
                users.remove(os.getpid())
            if state is not None and users:
                self.pid, self.port = state["pid"], state["port"]
                self._write_state(users)
            else:
                # The registry names the current server, which may have been started again
                # by another process since this one joined.
                pid = state["pid"] if state is not None else self.pid
                if pid is not None:
                    self._terminate(pid, timeout)
                self._state_file.unlink(missing_ok=True)
            if self.process is not None:
                self.process.poll()  # reap a server of ours that has exited
            self.joined = False

    def _terminate(self, pid: int, timeout: float) -> None:
        own = self.process if self.process is not None and self.process.pid == pid else None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # nx-27017 closes SQLite cleanly on SIGTERM
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # poll() reaps a child of ours; a server started by another process is not one
            if (own.poll() is not None) if own else not pid_alive(pid):
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if own:
            own.wait()


def _nx_27017_command() -> str:
    beside_python = Path(sys.executable).parent / "nx-27017"
    return str(beside_python) if beside_python.exists() else "nx-27017"
