"""The queue end to end: `leaktrace worker` on Redis, consumer threads inside the app on SQLite."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from leaktrace.api.app import create_app
from leaktrace.config import Settings
from tests.api.helpers import new_account, submit_job


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(predicate, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    port = _free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        assert _wait_for(lambda: _accepts(port), 20)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_worker_process_consumes_redis_queue(tmp_path: Path, redis_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "var", queue_url=redis_url)
    with TestClient(create_app(settings)) as client:
        assert not client.app.state.queue.is_embedded  # type: ignore[attr-defined]
        account = new_account(client, settings)
        job = submit_job(client, account)
        assert client.app.state.queue.huey.pending_count() == 1  # type: ignore[attr-defined]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEAKTRACE_")}
        env.update(LEAKTRACE_DATA_DIR=str(settings.data_dir), LEAKTRACE_QUEUE_URL=redis_url)
        log = tmp_path / "worker.log"
        with log.open("w") as out:
            worker = subprocess.Popen([sys.executable, "-m", "leaktrace.cli", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            assert _wait_for(lambda: f"job {job['id']} failed" in log.read_text()), log.read_text()
            assert client.app.state.queue.huey.pending_count() == 0  # type: ignore[attr-defined]
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        shown = client.get(f"/v1/jobs/{job['id']}", headers=account.headers).json()["job"]
        assert (shown["status"], shown["error_code"]) == ("FAILURE", "0x0050010")  # its input was never uploaded


def test_embedded_consumer_threads_drain_the_sqlite_queue(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var", worker_threads=1)
    app = create_app(settings, run_worker=True)
    with TestClient(app) as client:  # the lifespan starts the consumer threads
        account = new_account(client, settings)
        submit_job(client, account)
        huey = client.app.state.queue.huey  # type: ignore[attr-defined]
        assert _wait_for(lambda: huey.pending_count() == 0, 30)
