"""The app as deployed: `python -m chat_api` on the embedded store, and the Procfile under honcho."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from chat_api.store.embedded import free_loopback_port, pid_alive
from chat_api.store.indexes import declared_indexes
from tests.factories import user_payload
from tests.helpers import REPO, run_script, stop_server, subprocess_env, wait_for_health


@contextmanager
def serving(command: list[str], cwd: Path, env: dict[str, str], port: int) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        wait_for_health(f"http://127.0.0.1:{port}", process=process)
        yield process
    finally:
        stop_server(process)


def test_run_on_embedded_store_survives_restart_and_stops_store(tmp_path: Path) -> None:
    port = free_loopback_port()
    env = subprocess_env(tmp_path / "data", PORT=str(port))
    base = f"http://127.0.0.1:{port}"
    payload = user_payload()

    with serving([sys.executable, "-m", "chat_api"], tmp_path, env, port) as process:
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok", "store": "embedded"}
        assert httpx.post(f"{base}/api/register", json=payload).status_code == 201
        store_pid = json.loads((tmp_path / "data" / "nx-27017.json").read_text())["pid"]
    output = process.stdout.read() if process.stdout else ""
    assert process.returncode == 0, output
    assert output.count("store: embedded nx-27017") == 1, output
    assert not pid_alive(store_pid), "the embedded store outlived the app"
    assert not (tmp_path / "data" / "nx-27017.json").exists()

    with serving([sys.executable, "-m", "chat_api"], tmp_path, env, port):
        login = httpx.post(f"{base}/api/login", json={"chat_id": payload["chat_id"], "password": payload["password"]})
        assert login.status_code == 200
        me = httpx.get(f"{base}/api/getUser", headers={"Authorization": login.json()["token"]})
        assert me.json()["email"] == payload["email"]


def test_procfile_web_serves_with_several_workers_on_one_store(tmp_path: Path) -> None:
    port = free_loopback_port()
    env = subprocess_env(tmp_path / "data", WEB_CONCURRENCY="2")
    honcho = [sys.executable, "-m", "honcho", "start", "-f", str(REPO / "Procfile"), "-d", str(tmp_path)]
    with serving([*honcho, "-p", str(port), "web"], tmp_path, env, port) as process:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz").json()["store"] == "embedded"
        payload = user_payload()
        assert httpx.post(f"{base}/api/register", json=payload).status_code == 201
        token = httpx.post(
            f"{base}/api/login", json={"chat_id": payload["chat_id"], "password": payload["password"]}
        ).json()["token"]
        # each request on a new connection, so both workers answer some: they share the
        # store and the development JWT secret
        statuses = {httpx.get(f"{base}/api/getUser", headers={"Authorization": token}).status_code for _ in range(20)}
        assert statuses == {200}
    output = process.stdout.read() if process.stdout else ""
    assert output.count("Starting worker") == 2, output
    assert output.count("store: embedded nx-27017") == 1, output


def test_procfile_release_creates_indexes(tmp_path: Path) -> None:
    release = next(
        line.split(":", 1)[1].strip()
        for line in (REPO / "Procfile").read_text().splitlines()
        if line.startswith("release:")
    )
    env = subprocess_env(tmp_path / "data")
    result = subprocess.run(  # noqa: S602 - the Procfile line, run by a shell as Heroku does
        release, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    # All but fs.files' (filename, uploadDate): nx-27017's GridFS tables have fixed indexes (docs/store.md).
    assert f"{len(declared_indexes()) - 1} index(es) created" in result.stdout
    assert run_script("scripts.indexes", "status", cwd=tmp_path, env=env).returncode == 0


def test_production_without_jwt_secret_refuses_to_start(tmp_path: Path) -> None:
    env = subprocess_env(tmp_path / "data", ENV="production", MONGODB_URI="mongodb://127.0.0.1:9/")
    result = subprocess.run(
        [sys.executable, "-m", "chat_api"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "JWT_SECRET is not set" in result.stderr
