"""scripts.indexes and scripts.seed, run as a user runs them, each on an embedded store of its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gridfs
import pytest
from pymongo import MongoClient

from chat_api.indexes import IndexSpec, declared_indexes
from chat_api.store import EmbeddedStore
from tests.conftest import OtherApp
from tests.helpers import Api, run_script, subprocess_env

DECLARED = len(declared_indexes())
# nx-27017 keeps GridFS in tables with fixed indexes: `create` only makes the tables (which bring
# the (files_id, n) unique index, not fs.files' (filename, uploadDate)), and `drop` leaves them.
GRIDFS_DECLARED = len([spec for spec in declared_indexes() if spec.collection.startswith("fs.")])


def test_indexes_create_drop_status_round_trip(tmp_path: Path) -> None:
    env = subprocess_env(tmp_path / "data")

    status = run_script("scripts.indexes", "status", cwd=tmp_path, env=env)
    assert status.returncode == 1, status.stdout + status.stderr
    assert "missing  users.email_1" in status.stdout
    assert "missing  users.chat_id_1" in status.stdout
    assert "store: embedded nx-27017" in status.stdout

    created = run_script("scripts.indexes", "create", cwd=tmp_path, env=env)
    assert created.returncode == 0, created.stderr
    assert f"{DECLARED - 1} index(es) created" in created.stdout
    assert "created  fs.chunks.files_id_1_n_1 {files_id: 1, n: 1} unique=True" in created.stdout
    assert "rate_limits.expires_at_ttl {expires_at: 1} expireAfterSeconds=0" in created.stdout

    again = run_script("scripts.indexes", "create", cwd=tmp_path, env=env)
    assert "all declared indexes already exist" in again.stdout

    status = run_script("scripts.indexes", "status", cwd=tmp_path, env=env)
    assert status.returncode == 0
    assert "present  users.email_1 {email: 1} unique" in status.stdout
    assert "present  fs.chunks.files_id_1_n_1" in status.stdout
    assert "fixed    fs.files.filename_1_uploadDate_1" in status.stdout
    assert "in sync" in status.stdout

    dropped = run_script("scripts.indexes", "drop", cwd=tmp_path, env=env)
    assert dropped.returncode == 0
    assert f"{DECLARED - GRIDFS_DECLARED} index(es) dropped" in dropped.stdout

    status = run_script("scripts.indexes", "status", cwd=tmp_path, env=env)
    assert status.returncode == 1
    assert "missing  users.chat_id_1" in status.stdout


def test_indexes_status_reports_extra_index(tmp_path: Path) -> None:
    env = subprocess_env(tmp_path / "data")
    assert run_script("scripts.indexes", "create", cwd=tmp_path, env=env).returncode == 0
    store = EmbeddedStore(tmp_path / "data").start()
    client: MongoClient[dict[str, Any]] = MongoClient(store.uri)
    client.chat.users.create_index([("username", 1)], name="username_1")
    client.close()
    store.stop()
    status = run_script("scripts.indexes", "status", cwd=tmp_path, env=env)
    assert status.returncode == 1
    assert "extra    users.idx_users_username" in status.stdout or "extra    users.username_1" in status.stdout

    dropped = run_script("scripts.indexes", "drop", cwd=tmp_path, env=env)
    assert f"{DECLARED - GRIDFS_DECLARED + 1} index(es) dropped" in dropped.stdout
    status = run_script("scripts.indexes", "status", cwd=tmp_path, env=env)
    assert "extra    " not in status.stdout
    assert status.stdout.count("missing  ") == DECLARED - GRIDFS_DECLARED


def test_seed_inserts_loginable_demo_users(tmp_path: Path, other_app: OtherApp) -> None:
    env = subprocess_env(tmp_path / "data")
    seeded = run_script("scripts.seed", "--users", "120", cwd=tmp_path, env=env)
    assert seeded.returncode == 0, seeded.stderr
    assert "inserted 120 users" in seeded.stdout
    assert "120/120" in seeded.stderr  # the progress bar
    again = run_script("scripts.seed", "--users", "5", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr

    store = EmbeddedStore(tmp_path / "data").start()
    try:
        client: MongoClient[dict[str, Any]] = MongoClient(store.uri)
        users = client.chat.users
        assert users.count_documents({}) == 125
        assert len(users.distinct("chat_id")) == 125
        first = users.find_one({}, sort=[("chat_id", 1)])
        assert first is not None
        assert first["password"].startswith("$2b$")
        client.close()
        with other_app(mongodb_uri=store.uri, mongodb_db="chat") as app_client:
            _, login = app_client.post("/api/login", json={"chat_id": first["chat_id"], "password": "demo-password"})
            assert login.status == 200
            _, by_email = app_client.post(
                "/api/login", json={"chat_id": f"demo{first['chat_id'] + 124}@example.com", "password": "demo-password"}
            )
            assert by_email.status == 200
            assert "demo-password" not in by_email.text
            assert "$2b$" not in by_email.text
    finally:
        store.stop()


def test_scripts_join_the_store_of_a_running_app(tmp_path: Path) -> None:
    """A script run beside the app uses the app's embedded store and leaves it running."""
    data = tmp_path / "data"
    running = EmbeddedStore(data).start()
    try:
        result = run_script("scripts.indexes", "create", cwd=tmp_path, env=subprocess_env(data))
        assert result.returncode == 0
        assert f"127.0.0.1:{running.port}" in result.stdout
        state = json.loads((data / "nx-27017.json").read_text())
        assert state["port"] == running.port
        client: MongoClient[dict[str, Any]] = MongoClient(running.uri, serverSelectionTimeoutMS=2000)
        assert client.admin.command("ping")["ok"] == 1
        client.close()
    finally:
        running.stop()


def test_lookups_by_email_and_chat_id_use_the_unique_indexes(api: Api, sync_db: Any) -> None:
    """The app created the indexes when it started (the `api` fixture starts it)."""
    sync_db.users.insert_one({"email": "a@example.com", "chat_id": 1})
    for query in ({"email": {"$eq": "a@example.com"}}, {"chat_id": {"$eq": 1}}):
        plan = json.dumps(sync_db.users.find(query).explain(), default=str)
        # nx-27017 answers with SQLite's plan, MongoDB with its own
        assert "USING INDEX" in plan or "IXSCAN" in plan, plan


def test_seed_without_room_for_chat_ids_fails_clearly(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "data").start()
    client: MongoClient[dict[str, Any]] = MongoClient(store.uri)
    client.chat.users.insert_one({"chat_id": 2**63 - 1, "email": "last@example.com"})
    client.close()
    store.stop()
    result = run_script("scripts.seed", "--users", "3", cwd=tmp_path, env=subprocess_env(tmp_path / "data"))
    assert result.returncode == 1
    assert "no room for 3 consecutive chat_ids" in result.stderr
    assert "Traceback" not in result.stderr


def test_seed_refuses_a_password_users_could_not_choose(tmp_path: Path) -> None:
    result = run_script("scripts.seed", "--users", "3", "--password", "abc", cwd=tmp_path, env=subprocess_env(tmp_path))
    assert result.returncode == 2
    assert "--password must be at least 6 characters long" in result.stderr
    assert "Traceback" not in result.stderr
    assert "input_value" not in result.stderr


@pytest.mark.no_store
def test_an_index_with_other_options_is_not_the_declared_one() -> None:
    """A sparse or partial unique index does not make every document unique. (nx-27017
    drops these options, so this is checked on index_information() as MongoDB answers it.)"""
    declared = {spec.name: spec for spec in declared_indexes()}
    as_declared = IndexSpec.of("users", "chat_id_1", [("chat_id", 1)], {"v": 2, "unique": True})
    sparse = IndexSpec.of("users", "chat_id_1", [("chat_id", 1)], {"v": 2, "unique": True, "sparse": True})
    partial = IndexSpec.of(
        "users", "email_unique", [("email", 1)], {"unique": True, "partialFilterExpression": {"email": {"$type": 2}}}
    )
    assert as_declared.same_index(declared["chat_id_1"])
    assert not sparse.same_index(declared["chat_id_1"])
    assert not partial.same_index(declared["email_1"])


@pytest.mark.no_store
def test_a_ttl_of_zero_is_an_option_of_its_own() -> None:
    """expireAfterSeconds=0 (expire at the stored date) must not read as "no TTL": 0 == False."""
    declared = {spec.name: spec for spec in declared_indexes()}
    ttl = IndexSpec.of("rate_limits", "idx_rate_limits_expires_at", [("expires_at", 1)], {"expireAfterSeconds": 0})
    plain = IndexSpec.of("rate_limits", "expires_at_1", [("expires_at", 1)], {"v": 2})
    assert ttl.same_index(declared["expires_at_ttl"])
    assert not plain.same_index(declared["expires_at_ttl"])


def test_indexes_status_on_a_fresh_store_leaves_gridfs_working(tmp_path: Path) -> None:
    """On nx-27017, listing the indexes of `fs.chunks` before its table exists would create a
    document table under its name, and every upload would fail from then on."""
    env = subprocess_env(tmp_path / "data")
    status = run_script("scripts.indexes", "status", cwd=tmp_path, env=env)
    assert "missing  fs.chunks.files_id_1_n_1" in status.stdout
    store = EmbeddedStore(tmp_path / "data").start()
    try:
        client: MongoClient[dict[str, Any]] = MongoClient(store.uri)
        file_id = gridfs.GridFSBucket(client.chat).upload_from_stream("a", b"\x89PNG\r\n\x1a\n" * 1000)
        assert gridfs.GridFSBucket(client.chat).open_download_stream(file_id).read() == b"\x89PNG\r\n\x1a\n" * 1000
        client.close()
    finally:
        store.stop()
    status = run_script("scripts.indexes", "create", cwd=tmp_path, env=env)
    assert status.returncode == 0, status.stderr
