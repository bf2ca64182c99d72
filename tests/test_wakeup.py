"""Wake-ups between the processes of one instance without Redis (chat_api/realtime/wakeup.py): real Unix sockets."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from chat_api.realtime.wakeup import Wakeups

pytestmark = pytest.mark.no_store


def test_a_publisher_wakes_every_other_process_of_the_instance_but_itself(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int]:
        woken = {"self": 0, "sibling": 0}
        me = Wakeups(tmp_path, lambda: woken.__setitem__("self", woken["self"] + 1))
        sibling = Wakeups(tmp_path, lambda: woken.__setitem__("sibling", woken["sibling"] + 1))
        sibling.path = tmp_path / "sibling.sock"  # another process's socket (one pid here)
        assert await me.start()
        assert await sibling.start()
        me.notify()
        me.notify()
        await asyncio.sleep(0.1)
        me.close()
        sibling.close()
        return woken["self"], woken["sibling"]

    assert asyncio.run(scenario()) == (0, 2)
    assert not list(tmp_path.glob("*.sock")), "closed sockets leave no file"


def test_the_socket_of_a_process_that_is_gone_is_removed(tmp_path: Path) -> None:
    async def scenario() -> None:
        gone = tmp_path / "12345.sock"
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        dead.bind(str(gone))
        dead.close()  # bound, then its process ended: the file stays, nobody reads it
        me = Wakeups(tmp_path, lambda: None)
        assert await me.start()
        me.notify()
        me.close()
        assert not gone.exists()

    asyncio.run(scenario())


def test_without_a_usable_folder_a_process_goes_on_without_wake_ups(tmp_path: Path) -> None:
    too_long = tmp_path / ("x" * 120)  # a Unix socket path is limited to 107 bytes

    async def scenario() -> bool:
        wakeups = Wakeups(too_long, lambda: None)
        started = await wakeups.start()
        wakeups.notify()  # nothing to do, nothing raised
        wakeups.close()
        return started

    assert asyncio.run(scenario()) is False
    assert os.path.isdir(too_long)
