"""Fixtures for the import flow tests: a real service with its embedded worker, as `make serve` runs it.

Each test module gets its own data folder and app (SQLite database, SQLite queue, local storage,
consumer threads and the job supervisor in-process), and talks to it through HTTP only, the way a
MediaHub client does: upload, submit, poll.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from leaktrace.api.app import create_app
from leaktrace.config import Settings
from leaktrace.store.db import open_database
from leaktrace.store.models import File
from tests.api.helpers import Account, new_account

PUBLIC_URL = "https://api.xvid.com"
TESTDATA = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"
FINAL = ("SUCCESS", "FAILURE")
JOB_TIMEOUT_S = 240.0  # the longest a test job may take on a busy 2-core machine


@dataclass
class Service:
    client: TestClient
    settings: Settings
    account: Account

    @property
    def headers(self) -> dict[str, str]:
        return self.account.headers

    def upload(self, source: Path, object_key: str, *, chunks: int = 1) -> dict[str, Any]:
        """Upload `source` through the upload flow in `chunks` plupload-style parts; return the upload."""
        return upload(self.client, self.account, source, object_key, chunks=chunks)

    def submit(self, job: dict[str, Any]) -> dict[str, Any]:
        body = {"job": {"pipeline": {"id": self.account.pipeline_id}, **job}}
        response = self.client.post("/v1/jobs/", json=body, headers=self.headers)
        assert response.status_code == 201, response.text
        return response.json()["job"]

    def job(self, job_id: str, **params: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/jobs/{job_id}", params=params, headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()["job"]

    def wait(self, job_id: str, *, until: tuple[str, ...] = FINAL, timeout_s: float = JOB_TIMEOUT_S,
             condition: Any = None, seen: list[int] | None = None) -> dict[str, Any]:
        """Poll the job until its status is in `until` (and `condition(job)` holds, if given);
        `seen` collects the percentage of every poll."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if seen is not None:
                seen.append(job["percentage_completed"])
            if job["status"] in until and (condition is None or condition(job)):
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job['status']} at {job.get('percentage_completed')}%"
            time.sleep(0.2)

    def _storage_key(self, file_id: str) -> str:
        response = self.client.get(f"/v1/files/{file_id}", headers=self.headers)
        assert response.status_code == 200, response.text  # the file is the account's
        with self.client.app.state.db.read() as session:  # type: ignore[attr-defined]
            return session.get(File, file_id).storage_key

    def blob(self, file_id: str) -> Path:
        """The local path of a stored file's bytes (downloads through the API come with delivery)."""
        path = self.client.app.state.storage.local_path(self._storage_key(file_id))  # type: ignore[attr-defined]
        assert path is not None and path.exists()
        return path

    def tree(self, file_id: str, into: Path) -> Path:
        """A copy of the folder stored for a file (an AutoGraph output's prepared title)."""
        self.client.app.state.storage.download_tree(self._storage_key(file_id), into)  # type: ignore[attr-defined]
        return into


def upload(client: TestClient, account: Account, source: Path, object_key: str, *, chunks: int = 1) -> dict[str, Any]:
    """The reference's three-step upload: initiate, POST the form (in chunks), complete, poll."""
    response = client.post(
        "/v1/files/uploads/", params={"object_key": object_key, "pipeline_id": account.pipeline_id}, headers=account.headers
    )
    assert response.status_code in (200, 201), response.text
    upload = response.json()["upload"]
    data = source.read_bytes()
    size = -(-len(data) // chunks)
    for index in range(chunks):
        fields = {**upload["form_post_params"], "chunk": str(index), "chunks": str(chunks)}
        part = data[index * size:(index + 1) * size]
        response = client.post(upload["form_post_url"], data=fields, files={"file": (source.name, part)})
        assert response.status_code == 201, response.text
    response = client.put(f"/v1/files/uploads/{upload['id']}", json={"upload": {"nb_chunks": chunks}}, headers=account.headers)
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 60
    while (upload := client.get(f"/v1/files/uploads/{upload['id']}", headers=account.headers).json()["upload"])["status"] != "COMPLETED":
        assert upload["status"] in ("UPLOADING", "COMPLETING") and time.monotonic() < deadline, upload
        time.sleep(0.1)
    return upload


def make_service(tmp_path_factory: pytest.TempPathFactory, *, run_worker: bool = True, **overrides: Any) -> Iterator[Service]:
    """A service on a fresh data folder; with `run_worker`, its embedded worker runs the jobs."""
    data_dir = tmp_path_factory.mktemp("var")
    settings = Settings(data_dir=data_dir, public_url=PUBLIC_URL, secret_key=None, job_lease_s=4.0, **overrides)
    app = create_app(settings, run_worker=run_worker)
    with TestClient(app) as client:
        yield Service(client=client, settings=settings, account=new_account(client, settings))
    open_database(settings.resolved_database_url).dispose()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from make_service(tmp_path_factory)


@pytest.fixture(scope="module")
def idle_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A service whose jobs stay queued: no worker runs them, the test drives the flow itself."""
    yield from make_service(tmp_path_factory, run_worker=False)
