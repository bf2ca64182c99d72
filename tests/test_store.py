"""The embedded store's life cycle: shared by a data folder, adopted when orphaned, stopped cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from chat_api.store.client import describe_uri
from chat_api.store.embedded import EmbeddedStore, pid_alive
from tests.helpers import REPO


def test_data_survives_a_restart_of_the_store(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path).start()
    client: MongoClient[dict[str, Any]] = MongoClient(store.uri)
    client.chat.users.insert_one({"email": "kept@example.com", "chat_id": 7})
    client.close()
    store.stop()

    again = EmbeddedStore(tmp_path).start()
    client = MongoClient(again.uri)
    found = client.chat.users.find_one({"chat_id": 7})
    client.close()
    again.stop()
    assert found is not None
    assert found["email"] == "kept@example.com"


def _users(folder: Path) -> list[int]:
    users: list[int] = json.loads((folder / "nx-27017.json").read_text())["users"]
    return users


def test_second_user_of_a_folder_joins_and_the_last_to_leave_stops_it(tmp_path: Path) -> None:
    first = EmbeddedStore(tmp_path).start()
    second = EmbeddedStore(tmp_path).start()
    assert second.port == first.port
    assert _users(tmp_path) == [os.getpid(), os.getpid()]
    assert first.pid is not None
    # the one that started the server leaves first, as a script finishing beside the app
    first.stop()
    assert pid_alive(first.pid)
    assert _users(tmp_path) == [os.getpid()]
    second.stop()
    assert not pid_alive(first.pid)
    assert not (tmp_path / "nx-27017.json").exists()


def test_store_left_by_a_dead_process_is_taken_over_and_stopped(tmp_path: Path) -> None:
    """As after an API process was SIGKILLed: its store runs on, used by nobody alive."""
    code = (
        "from pathlib import Path; from chat_api.store.embedded import EmbeddedStore; "
        f"EmbeddedStore(Path({str(tmp_path)!r})).start()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    orphan = json.loads((tmp_path / "nx-27017.json").read_text())
    assert pid_alive(orphan["pid"])

    adopter = EmbeddedStore(tmp_path).start()
    assert adopter.port == orphan["port"]
    assert _users(tmp_path) == [os.getpid()]
    adopter.stop(timeout=10)
    assert not pid_alive(orphan["pid"])


def test_a_busy_store_is_waited_for_not_replaced(tmp_path: Path) -> None:
    """nx-27017 answers one request at a time; one that misses a ping is still the store."""
    first = EmbeddedStore(tmp_path).start()
    assert first.pid is not None
    os.kill(first.pid, signal.SIGSTOP)
    threading.Timer(1.5, os.kill, (first.pid, signal.SIGCONT)).start()
    second = EmbeddedStore(tmp_path).start()
    assert second.port == first.port
    assert second.pid == first.pid
    second.stop()
    first.stop()
    assert not pid_alive(first.pid)


def test_store_description_never_shows_credentials() -> None:
    described = describe_uri("mongodb://alice:s3cret@db1.example:27017,db2.example:27018/chat?replicaSet=rs0")
    assert described == "mongodb://db1.example:27017,db2.example:27018"
    assert "s3cret" not in describe_uri("mongodb+srv://alice:s3cret@cluster0.example.mongodb.net/")
