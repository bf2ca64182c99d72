"""A real `redis-server` for the tests: a free loopback port and a temporary folder of its own (never a developer's
Redis on 6379), no persistence; it can be stopped, killed and restarted on the same port."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from chat_api.store.embedded import free_loopback_port

DEVELOPER_PORT = 6379  # a Redis the developer may run: never used, never touched
START_TIMEOUT = 10.0


def ping(port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis on 127.0.0.1:`port` answers PING (the inline form of the protocol; no client needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One `redis-server` process; `url` stays the same across `kill()`/`stop()` and `restart()`."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: `make test` installs it (apt-get install redis-server)")
        self.binary = binary
        self.folder = folder
        self.port = port if port is not None else free_loopback_port()
        if self.port == DEVELOPER_PORT:
            raise ValueError("port 6379 belongs to the developer's own Redis")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING."""
        if self.running:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.folder),
            "--logfile", str(self.folder / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            # After a kill the port can stay busy for a moment; the server then exits at once and is started again.
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            while self.process.poll() is None and time.monotonic() < deadline:
                if ping(self.port):
                    return self
                time.sleep(0.02)
            if self.process.poll() is None:
                self.kill()
                raise RuntimeError(f"redis-server on port {self.port} did not answer within {START_TIMEOUT} s")
            if time.monotonic() >= deadline:
                log = self.folder / "redis.log"
                raise RuntimeError(
                    f"redis-server on port {self.port} exited: {log.read_text() if log.exists() else ''}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, as an orderly shutdown, and wait (SIGKILL if it does not go in time)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-stream, its connections reset, its data (none kept) gone."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> RedisServer:
        """Start again on the same port (after `kill()` or `stop()`, or killing it now if it still runs)."""
        self.kill()
        return self.start()

    def flush(self) -> None:
        """Empty every database (FLUSHALL), so that a test starts from nothing."""
        if not self.running:
            self.start()
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as connection:
            connection.sendall(b"FLUSHALL\r\n")
            answer = connection.recv(64)
        assert answer.startswith(b"+OK"), answer
