"""The embedded store's life cycle: shared by a data folder, adopted when orphaned, stopped cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from chat_api.store import EmbeddedStore, _pid_alive, describe_uri
from tests.helpers import REPO


def _alive(pid: int) -> bool:
    return _pid_alive(pid)


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


def test_second_user_of_a_folder_attaches_and_does_not_stop_it(tmp_path: Path) -> None:
    first = EmbeddedStore(tmp_path).start()
    second = EmbeddedStore(tmp_path).start()
    assert second.port == first.port
    assert not second.owned
    second.stop()
    assert first.pid is not None
    assert _alive(first.pid)
    first.stop()
    assert not _alive(first.pid)
    assert not (tmp_path / "nx-27017.json").exists()


def test_store_of_a_dead_owner_is_adopted_and_stopped(tmp_path: Path) -> None:
    """As after an API process was SIGKILLed: its store runs on, owned by nobody."""
    code = (
        "from pathlib import Path; from chat_api.store import EmbeddedStore; "
        f"EmbeddedStore(Path({str(tmp_path)!r})).start()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    orphan = json.loads((tmp_path / "nx-27017.json").read_text())
    assert _alive(orphan["pid"])

    adopter = EmbeddedStore(tmp_path).start()
    assert adopter.port == orphan["port"]
    assert adopter.owned
    adopter.stop(timeout=10)
    assert not _alive(orphan["pid"])


def test_store_description_never_shows_credentials() -> None:
    described = describe_uri("mongodb://alice:s3cret@db1.example:27017,db2.example:27018/chat?replicaSet=rs0")
    assert described == "mongodb://db1.example:27017,db2.example:27018"
    assert "s3cret" not in describe_uri("mongodb+srv://alice:s3cret@cluster0.example.mongodb.net/")
