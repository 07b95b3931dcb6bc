"""Limits that show only on a real server or over time: kept-alive connections after a 500, stalled
bodies, the access log, the token endpoint's throttle, and the data folder's file modes."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from leaktrace.api.app import create_app
from leaktrace.api.throttle import LOCK_AFTER_FAILURES, LOCKOUT_S, GuessThrottle
from leaktrace.config import Settings
from tests.api.helpers import Account, new_account
from tests.api.test_serve import _free_port, wait_until_serving


@pytest.fixture
def own_app(tmp_path: Path) -> FastAPI:
    settings = Settings(data_dir=tmp_path / "var", public_url="http://127.0.0.1", body_idle_timeout_s=0.5)
    return create_app(settings)


@pytest.fixture
def server(own_app: FastAPI) -> Iterator[tuple[str, int]]:
    """`own_app` behind uvicorn on a loopback port."""

    @own_app.get("/v1/boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("an unexpected fault")

    port = _free_port()
    instance = uvicorn.Server(uvicorn.Config(own_app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield "127.0.0.1", port
    instance.should_exit = True
    thread.join(timeout=10)


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_a_500_keeps_the_kept_alive_connection(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=10) as sock:
        sock.sendall(b"GET /v1/boom HTTP/1.1\r\nHost: x\r\n\r\n")
        head = _read_response(sock)
        assert head.startswith(b"HTTP/1.1 500") and b"connection: close" not in head.lower()
        sock.sendall(b"GET /v1/codecs/ HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(sock).startswith(b"HTTP/1.1 200")


def test_a_stalled_body_times_out(server: tuple[str, int]) -> None:
    started = time.monotonic()
    with socket.create_connection(server, timeout=10) as sock:
        sock.sendall(b"POST /v1/jobs/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 500000\r\n\r\n{}")  # fmt: skip
        head = _read_response(sock)
        assert head.startswith(b"HTTP/1.1 408") and b"connection: close" in head.lower()
        assert sock.recv(1) == b""  # closed by the server
    assert time.monotonic() - started < 5


def test_the_access_log_holds_no_secrets(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEAKTRACE_")}
    env["LEAKTRACE_DATA_DIR"] = str(tmp_path / "var")
    port = _free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "leaktrace.cli", "serve", "--port", str(port)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_serving(base, log_path)
            httpx.get(f"{base}/v1/jobs/?access_token=TOKENSECRET123&limit=5")
            httpx.post(f"{base}/v1/oauth2/token/?grant_type=client_credentials&client_id=abc&client_secret=CLIENTSECRET456")
            httpx.get(f"{base}/v1/files/?user_data=s3%3A%2F%2FKEYID%3AURISECRET789%40bucket%2Fx")
        finally:
            server.terminate()
            server.wait(timeout=30)
    text = log_path.read_text()
    assert "/v1/jobs/?access_token=REDACTED&limit=5" in text and "client_secret=REDACTED" in text
    for secret in ("TOKENSECRET123", "CLIENTSECRET456", "URISECRET789"):
        assert secret not in text


def test_guessing_a_secret_is_slowed_then_refused_and_the_real_client_gets_in_after(own_app: FastAPI) -> None:
    now = [1000.0]
    own_app.state.token_throttle = GuessThrottle(clock=lambda: now[0], delay_s=0.2)
    with TestClient(own_app) as client:
        account: Account = new_account(client, own_app.state.settings)
        wrong = {"grant_type": "client_credentials", "client_id": account.client_id, "client_secret": "guess"}
        right = {**wrong, "client_secret": account.client_secret}
        took = []
        for _ in range(LOCK_AFTER_FAILURES):
            started = time.monotonic()
            assert client.post("/v1/oauth2/token/", data=wrong).status_code == 401
            took.append(time.monotonic() - started)
        assert max(took[:5]) < 0.2 <= min(took[5:])
        refused = client.post("/v1/oauth2/token/", data=right)
        assert refused.status_code == 429
        assert refused.json()["error"]["error_code"] == "0x0010004"
        assert int(refused.headers["Retry-After"]) == LOCKOUT_S
        now[0] += LOCKOUT_S + 1
        assert client.post("/v1/oauth2/token/", data=right).status_code == 200


def test_the_data_folder_and_its_databases_are_private(own_app: FastAPI) -> None:
    data_dir = own_app.state.settings.data_dir
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    for name in ("leaktrace.db", "queue.db", "secret.key"):
        own_app.state.settings.fernet()
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600, name
