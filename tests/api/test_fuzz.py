"""CI's fuzz run: schemathesis over every operation of `/v1/openapi.json` (see `fuzzing.py`).

Bounded for `make test`: `FUZZ_EXAMPLES` requests per operation and generation mode, with a fixed
seed, both printed. `make fuzz` runs it longer with a fresh seed (`LEAKTRACE_FUZZ_EXAMPLES`,
`LEAKTRACE_FUZZ_SEED`). The fuzzer works in an app of its own, so its failed token requests do
not throttle the other tests' shared app.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from leaktrace.api.app import create_app
from leaktrace.api.throttle import GuessThrottle
from leaktrace.config import Settings
from leaktrace.store import accounts
from leaktrace.store.models import Application
from tests.api.conftest import PUBLIC_URL
from tests.api.fuzzing import fuzz
from tests.api.helpers import finish_job, new_account, submit_backtrace, submit_job

FUZZ_EXAMPLES = 25
FUZZ_SEED = 20_251_204


@pytest.fixture
def fuzz_client(tmp_path: Path, database_url: str | None) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "var", database_url=database_url, public_url=PUBLIC_URL, max_body_bytes=64 * 1024)
    app = create_app(settings)
    # Failed token requests are counted and refused as in production, but not slowed: the fuzzer
    # would spend most of its time waiting.
    app.state.token_throttle = GuessThrottle(delay_s=0)
    with TestClient(app) as client:
        yield client


def _scoped_tokens(client: TestClient, application_id: str) -> dict[str, str | None]:
    """A token for each scope alone, one with every scope, none, and an unknown one."""
    db = client.app.state.db  # type: ignore[attr-defined]
    with db.read() as session:
        app = session.get(Application, application_id)
    tokens: dict[str, str | None] = {
        scope: accounts.issue_token(db, app=app, scopes=[scope], lifetime_s=3600) for scope in accounts.ALL_SCOPES
    }
    tokens["all"] = accounts.issue_token(db, app=app, scopes=list(accounts.ALL_SCOPES), lifetime_s=3600)
    tokens["none"] = None
    tokens["unknown"] = "x" * 64
    return tokens


def _objects(client: TestClient, account) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """Real objects of every kind in the fuzzing account, by kind."""
    db = client.app.state.db  # type: ignore[attr-defined]
    jobs = [submit_job(client, account, autograph={"watermark_strength": "light"})["id"] for _ in range(2)]
    finish_job(db, jobs[0], status="SUCCESS", percentage=100)
    backtrace = submit_backtrace(client, account, jobs[0])["id"]
    files = client.get("/v1/files/", headers=account.headers).json()["files"]
    codecs = client.get("/v1/codecs/").json()["codecs"]
    presets = client.get("/v1/presets/").json()["presets"]
    return {
        "job": jobs, "backtrace": [backtrace], "pipeline": [account.pipeline_id], "file": [f["id"] for f in files],
        "codec": [c["id"] for c in codecs], "preset": [p["id"] for p in presets[:3]],
        "application": [account.application_id], "user": [account.user_id],
    }  # fmt: skip


def test_no_input_gives_a_server_error_or_breaks_the_schema(fuzz_client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    client = fuzz_client
    account = new_account(client, client.app.state.settings)  # type: ignore[attr-defined]
    examples = int(os.environ.get("LEAKTRACE_FUZZ_EXAMPLES", FUZZ_EXAMPLES))
    seed_value = int(os.environ.get("LEAKTRACE_FUZZ_SEED", FUZZ_SEED))
    report = fuzz(
        client.app, tokens=_scoped_tokens(client, account.application_id), ids=_objects(client, account),
        seed_value=seed_value, examples=examples,
    )  # fmt: skip
    with capsys.disabled():  # printed in every run, passing or not
        print(f"\n{report.summary()}")  # noqa: T201
    assert report.requests > 0
    assert not report.failed, report.summary() + "\n" + "\n".join(report.failures[:20])
