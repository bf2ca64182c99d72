"""Without Redis: the processes of one instance wake each other when they publish, at no store command.

Each process binds a Unix datagram socket in a folder of the instance (`DATA_DIR/wakeup/<pid>.sock`); a
publisher sends one byte to every other socket there, and a process that receives one looks at the counters at
once instead of at its idle pace. A lost or impossible wake-up only costs latency: the store is still read on the
process's own clock (realtime.hub). Instances on other machines are not reached (they need Redis to be fast).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("chat_api.realtime")


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, on_wake: Callable[[], None]):
        self.on_wake = on_wake

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.on_wake()


class Wakeups:
    def __init__(self, folder: Path, on_wake: Callable[[], None]):
        self.folder = folder
        self.path = folder / f"{os.getpid()}.sock"
        self.on_wake = on_wake
        self.transport: asyncio.BaseTransport | None = None
        self.sender: socket.socket | None = None

    async def start(self) -> bool:
        """Bind this process's socket; False (and no wake-ups, only the idle pace) if the platform cannot."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # a previous process with this pid
            receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            receiver.setblocking(False)
            receiver.bind(str(self.path))  # bound here: uvloop takes no Unix address for a datagram endpoint
            loop = asyncio.get_running_loop()
            self.transport, _ = await loop.create_datagram_endpoint(lambda: _Receiver(self.on_wake), sock=receiver)
            self.sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sender.setblocking(False)
        except (OSError, ValueError, TypeError) as error:
            log.warning("real time: no wake-ups between this instance's processes (%s): they look every 2 s", error)
            self.close()
            return False
        return True

    def notify(self) -> None:
        """Wake every other process of the instance: one datagram each, never waiting."""
        if self.sender is None:
            return
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            return
        for entry in entries:
            if not entry.name.endswith(".sock") or entry.path == str(self.path):
                continue
            try:
                self.sender.sendto(b"!", entry.path)
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)  # a process that is gone: nobody reads its socket
            except OSError:
                pass  # its buffer is full: it has wake-ups waiting already

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        if self.sender is not None:
            self.sender.close()
            self.sender = None
        with contextlib.suppress(OSError):
            self.path.unlink()
