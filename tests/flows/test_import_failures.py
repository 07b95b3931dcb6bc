"""Import jobs that cannot succeed end FAILURE with a documented code, or are refused up front, and
leave nothing behind; a job deleted while it runs stops its encoders and keeps no partial file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from leaktrace.flows import failures
from tests.flows.conftest import TESTDATA, Service

PRESET_360P = "525ce63284aed52635e85e04"
PRESET_1080P = "525ce63284aed52635e85e01"
STOP_TIMEOUT_S = 15.0  # a cancelled job's encoders are gone within this


def _submit(service: Service, input_name: str, **job: object) -> dict:
    return service.submit({"input": {"input_name": input_name}, "outputs": [{"preset": {"id": PRESET_360P}}], **job})


def _stored_keys(service: Service, prefix: str) -> list[str]:
    return list(service.client.app.state.storage.keys(prefix))  # type: ignore[attr-defined]


def test_a_truncated_file_fails_as_unreadable(service: Service, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes((TESTDATA / "tears_of_steel_360p24_10s.mp4").read_bytes()[:60_000])
    service.upload(truncated, "uploads/bad/truncated.mp4")
    job = service.wait(_submit(service, "uploads/bad/truncated.mp4")["id"])
    assert (job["status"], job["error_code"]) == ("FAILURE", failures.UNREADABLE_INPUT.code), job
    assert job["error_msg"].startswith(failures.UNREADABLE_INPUT.summary)
    assert _stored_keys(service, f"pipelines/{service.account.pipeline_id}/{job['output_prefix']}") == []


def test_a_text_file_named_mp4_fails_as_unreadable(service: Service, tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("these are not the frames you are looking for\n" * 100)
    service.upload(text, "uploads/bad/notes.mp4")
    job = service.wait(_submit(service, "uploads/bad/notes.mp4")["id"])
    assert (job["status"], job["error_code"]) == ("FAILURE", failures.UNREADABLE_INPUT.code), job


def test_a_missing_input_fails_as_not_found(service: Service) -> None:
    job = service.wait(_submit(service, "uploads/nothing/here.mp4")["id"])
    assert (job["status"], job["error_code"]) == ("FAILURE", failures.INPUT_NOT_FOUND.code), job
    assert "uploads/nothing/here.mp4" in job["error_msg"]


@pytest.mark.parametrize(
    "job",
    [
        {"input": {"input_name": "../../etc/passwd"}},
        {"input": {"input_name": "uploads/%2e%2e/%2e%2e/secret.mp4"}},
        {"input": {"input_name": "uploads/a.mp4"}, "output_prefix": "../../"},
        {"input": {"input_name": "uploads/a.mp4"}, "output_prefix": "{job_id}/",
         "outputs": [{"preset": {"id": PRESET_360P}, "output_name": "../../../escape"}]},
    ],
)
def test_a_path_leaving_the_pipeline_folder_is_refused_and_nothing_is_stored(service: Service, job: dict) -> None:
    body = {"job": {"pipeline": {"id": service.account.pipeline_id}, "outputs": [{"preset": {"id": PRESET_360P}}], **job}}
    before = service.client.get("/v1/jobs/", headers=service.headers).json()["total"]
    response = service.client.post("/v1/jobs/", json=body, headers=service.headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["error_code"] == "0x0050001"
    assert service.client.get("/v1/jobs/", headers=service.headers).json()["total"] == before


def _ffmpeg_processes_under(folder: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"ffmpeg" in cmdline and str(folder).encode() in cmdline:
            pids.append(int(proc.name))
    return pids


def test_deleting_a_running_job_stops_ffmpeg_and_leaves_no_partial_file(service: Service) -> None:
    service.upload(TESTDATA / "sintel_1920x818p30_10s.mp4", "uploads/long/sintel.mp4")
    job = _submit(service, "uploads/long/sintel.mp4", outputs=[{"preset": {"id": PRESET_1080P}}])
    work = service.settings.data_dir / "work"
    service.wait(job["id"], until=("PROCESSING",), condition=lambda j: j["percentage_completed"] > 5)
    assert _ffmpeg_processes_under(work), "an encode is running"
    response = service.client.delete(f"/v1/jobs/{job['id']}", headers=service.headers)
    assert response.status_code == 200, response.text
    assert service.client.get(f"/v1/jobs/{job['id']}", headers=service.headers).status_code == 404
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _ffmpeg_processes_under(work) or any(work.glob(f"job-{job['id']}-*")):
        assert time.monotonic() < deadline, "the encoder and the workspace outlived the job"
        time.sleep(0.2)
    assert _stored_keys(service, f"pipelines/{service.account.pipeline_id}/{job['output_prefix']}") == []


def test_deleting_a_finished_job_removes_its_outputs_but_not_its_input(service: Service) -> None:
    service.upload(TESTDATA / "tears_of_steel_360p24_10s.mp4", "uploads/keep/tears.mp4")
    job = service.wait(_submit(service, "uploads/keep/tears.mp4")["id"])
    assert job["status"] == "SUCCESS", job
    prefix = f"pipelines/{service.account.pipeline_id}/{job['output_prefix']}"
    assert _stored_keys(service, prefix)
    assert service.client.delete(f"/v1/jobs/{job['id']}", headers=service.headers).status_code == 200
    assert _stored_keys(service, prefix) == []
    assert service.client.get(f"/v1/files/{job['outputs'][0]['file']['id']}", headers=service.headers).status_code == 404
    assert _stored_keys(service, f"pipelines/{service.account.pipeline_id}/uploads/keep/") == [
        f"pipelines/{service.account.pipeline_id}/uploads/keep/tears.mp4"
    ]
