"""`leaktrace serve` as a real server: the README's token-then-list-jobs flow over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SERVE_START_TIMEOUT_S = 60


def wait_until_serving(base: str, log_path: Path) -> None:
    """Wait for a `leaktrace serve` at `base` to answer; fail with its log if it never does."""
    deadline = time.monotonic() + SERVE_START_TIMEOUT_S
    while True:
        try:
            httpx.get(f"{base}/v1/openapi.json", timeout=2)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)


def test_serve_answers_the_readme_flow(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEAKTRACE_")}
    env["LEAKTRACE_DATA_DIR"] = str(tmp_path / "var")
    leaktrace = [sys.executable, "-m", "leaktrace.cli"]
    subprocess.run([*leaktrace, "admin", "demo"], env=env, check=True, capture_output=True, timeout=120)
    credentials = json.loads((tmp_path / "var" / "demo-credentials.json").read_text())
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([*leaktrace, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, tmp_path / "serve.log")
        token = httpx.post(
            f"{base}/v1/oauth2/token/",
            data={"grant_type": "client_credentials", "client_id": credentials["client_id"],
                  "client_secret": credentials["client_secret"], "scope": "mediahub,autograph"},
        ).json()["access_token"]  # fmt: skip
        listed = httpx.get(f"{base}/v1/jobs/?human=true", headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200
        assert listed.text.startswith('{\n  "jobs": []')
        # hrefs follow where the server listens when LEAKTRACE_PUBLIC_URL is not set.
        assert listed.json()["first"]["href"] == f"{base}/v1/jobs/?start=0&limit=1000&human=true"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
