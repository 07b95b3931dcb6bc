"""A job never stays stuck: a killed worker's job is run again, or failed with a reason after its
last attempt; a job queued past its pipeline's cancel_timeout is cancelled with a reason."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import av
import pytest
from fastapi.testclient import TestClient

from leaktrace.api.app import create_app
from leaktrace.config import Settings
from leaktrace.flows import failures, imports
from leaktrace.store import job_runs
from leaktrace.store.db import open_database
from tests.api.helpers import new_account
from tests.flows.conftest import PUBLIC_URL, TESTDATA, Service, upload

PRESET_1080P = "525ce63284aed52635e85e01"
LEASE_S = 3.0
RECOVERY_TIMEOUT_S = 180.0  # lease expiry + a whole second attempt on a busy machine


def _worker(data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LEAKTRACE_DATA_DIR": str(data_dir), "LEAKTRACE_JOB_LEASE_S": str(LEASE_S),
           "LEAKTRACE_PUBLIC_URL": PUBLIC_URL, "LEAKTRACE_WORKER_THREADS": "1"}  # fmt: skip
    command = [str(Path(sys.executable).with_name("leaktrace")), "worker"]
    with open(log, "ab") as sink:
        return subprocess.Popen(command, env=env, stdout=sink, stderr=sink, start_new_session=True)


@pytest.mark.slow
def test_a_job_whose_worker_is_killed_mid_encode_is_run_again_and_succeeds(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    settings = Settings(data_dir=data_dir, public_url=PUBLIC_URL, job_lease_s=LEASE_S)
    with TestClient(create_app(settings)) as client:
        account = new_account(client, settings)
        service = Service(client=client, settings=settings, account=account)
        first = _worker(data_dir, tmp_path / "worker.log")
        try:
            upload(client, account, TESTDATA / "sintel_1920x818p30_10s.mp4", "uploads/sintel.mp4")
            job = service.submit({"input": {"input_name": "uploads/sintel.mp4"}, "outputs": [{"preset": {"id": PRESET_1080P}}]})
            service.wait(job["id"], until=("PROCESSING",), condition=lambda j: j["percentage_completed"] > 5, timeout_s=120)
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        second = _worker(data_dir, tmp_path / "worker.log")
        try:
            done = service.wait(job["id"], timeout_s=RECOVERY_TIMEOUT_S)
        finally:
            second.send_signal(signal.SIGINT)
            second.wait(timeout=30)
        assert done["status"] == "SUCCESS", (done, (tmp_path / "worker.log").read_text()[-3000:])
        with av.open(str(service.blob(done["outputs"][0]["file"]["id"]))) as container:
            assert container.streams.video[0].codec_context.height == 818
            assert sum(1 for _ in container.demux(container.streams.video[0])) >= 300
        assert not list((data_dir / "work").glob(f"job-{job['id']}-*")), "the dead attempt's workspace is gone"
        with client.app.state.db.read() as session:  # type: ignore[attr-defined]
            from leaktrace.store.models import Job

            assert session.get(Job, job["id"]).attempts == 2


class _NoPings:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def __call__(self, job_id: str, event: str) -> None:
        self.sent.append((job_id, event))


def _env(service: Service, *, max_attempts: int) -> tuple[imports.ImportEnv, _NoPings]:
    pings = _NoPings()
    env = service.client.app.state.queue.import_env()  # type: ignore[attr-defined]
    return replace(env, max_attempts=max_attempts, notify=pings), pings


def _job_of_a_dead_worker(service: Service) -> dict:
    """A queued job claimed by a worker that then died: its lease has run out."""
    job = service.submit({"input": {"input_name": "uploads/never/run.mp4"},
                          "outputs": [{"preset": {"id": PRESET_1080P}}]})  # fmt: skip
    db = open_database(service.settings.resolved_database_url)
    assert job_runs.claim(db, job_id=job["id"], worker="dead-worker", lease_s=0.001) is not None
    time.sleep(0.01)
    return job


def _recover(service: Service, *, max_attempts: int) -> tuple[list[str], _NoPings]:
    """Run one recovery pass; returns the jobs it queued again and the pings it sent."""
    env, pings = _env(service, max_attempts=max_attempts)
    requeued: list[str] = []
    imports.recover(open_database(service.settings.resolved_database_url), env, requeued.append)
    return requeued, pings


def test_a_job_whose_last_attempt_lost_its_worker_fails_with_a_reason(idle_service: Service) -> None:
    job = _job_of_a_dead_worker(idle_service)
    requeued, pings = _recover(idle_service, max_attempts=1)
    failed = idle_service.job(job["id"])
    assert requeued == []
    assert (failed["status"], failed["error_code"]) == ("FAILURE", failures.WORKER_LOST.code)
    assert "after 1 attempts" in failed["error_msg"]
    assert pings.sent == [(job["id"], "error")]


def test_a_job_whose_worker_died_before_its_last_attempt_is_queued_again(idle_service: Service) -> None:
    job = _job_of_a_dead_worker(idle_service)
    requeued, pings = _recover(idle_service, max_attempts=3)
    assert requeued == [job["id"]]
    assert idle_service.job(job["id"])["status"] == "QUEUED"
    assert pings.sent == []


def test_a_job_queued_past_the_pipelines_cancel_timeout_is_cancelled(idle_service: Service) -> None:
    service = idle_service
    client, account = service.client, service.account
    body = {"pipeline": {"name": "impatient", "description": "cancels what waits", "cancel_timeout": 1}}
    response = client.post("/v1/pipelines/", json=body, headers=account.headers)
    assert response.status_code in (200, 201), response.text
    pipeline = response.json()["pipeline"]["id"]
    job = service.submit({"pipeline": {"id": pipeline}, "input": {"input_name": "uploads/a.mp4"},
                          "outputs": [{"preset": {"id": PRESET_1080P}}]})  # fmt: skip
    _recover(service, max_attempts=3)
    assert service.job(job["id"])["status"] == "QUEUED", "not yet past the timeout"
    time.sleep(1.1)
    _, pings = _recover(service, max_attempts=3)
    cancelled = service.job(job["id"])
    assert (cancelled["status"], cancelled["error_code"]) == ("FAILURE", failures.CANCELLED.code)
    assert "cancel_timeout" in cancelled["error_msg"]
    assert pings.sent == [(job["id"], "error")]
