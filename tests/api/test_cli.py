"""The `leaktrace` command: admin and the demo account (each run on an empty data folder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LEAKTRACE = [sys.executable, "-m", "leaktrace.cli"]


def run(args: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEAKTRACE_")}
    env["LEAKTRACE_DATA_DIR"] = str(data_dir)
    return subprocess.run(LEAKTRACE + args, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_create_app_on_an_empty_data_dir(tmp_path: Path) -> None:
    first = run(["admin", "create-app", "--name", "studio", "--scopes", "mediahub,autograph"], tmp_path)
    assert first.returncode == 0, first.stderr
    created = json.loads(first.stdout)
    assert set(created) == {"user_id", "client_id", "client_secret"} and len(created["client_secret"]) == 64
    second = json.loads(run(["admin", "create-app", "--name", "studio"], tmp_path).stdout)
    assert second["user_id"] == created["user_id"] and second["client_id"] != created["client_id"]
    bad = run(["admin", "create-app", "--name", "studio", "--scopes", "root"], tmp_path)
    assert bad.returncode != 0 and "unknown scope" in bad.stderr


def test_demo_prints_the_secret_only_once(tmp_path: Path) -> None:
    first = run(["admin", "demo"], tmp_path)
    saved = json.loads((tmp_path / "demo-credentials.json").read_text())
    assert saved["client_secret"] in first.stdout and saved["client_id"] in first.stdout
    assert (tmp_path / "demo-credentials.json").stat().st_mode & 0o777 == 0o600
    later = run(["admin", "demo"], tmp_path)
    assert later.returncode == 0 and saved["client_secret"] not in later.stdout
    assert "demo-credentials.json" in later.stdout and "--reset" in later.stdout
    reset = run(["admin", "demo", "--reset"], tmp_path)
    renewed = json.loads((tmp_path / "demo-credentials.json").read_text())
    assert renewed["client_id"] == saved["client_id"] and renewed["client_secret"] != saved["client_secret"]
    assert renewed["client_secret"] in reset.stdout
