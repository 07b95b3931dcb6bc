"""Submitting, filtering, deleting jobs, and what the queue gets."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from leaktrace.store.models import File, Job
from tests.api.helpers import PRESET_720P, Account, finish_job, job_body, submit_job

PRESET_360P = "525ce63284aed52635e85e04"


def test_submit_returns_queued_job_and_queues_its_id(client: TestClient, account: Account, db) -> None:  # type: ignore[no-untyped-def]
    huey = client.app.state.queue.huey  # type: ignore[attr-defined]
    before = huey.pending_count()
    job = submit_job(
        client, account,
        input={"input_name": "https://cdn.example.com/titles/Big%20Movie.MOV", "framerate": "24", "interlaced": False},
        output_prefix="{job_id}/out/", user_data="batch-7",
        outputs=[{"preset_id": PRESET_720P, "output_name": "{input_name}_720"}],
    )  # fmt: skip
    assert job["status"] == "QUEUED" and job["percentage_completed"] == 0
    assert job["output_prefix"] == f"{job['id']}/out/"
    assert job["outputs"][0]["output_name"] == "Big%20Movie_720"
    assert job["input"]["force_framerate"] == "24" and job["input"]["force_interlaced"] is False
    assert job["input"]["file"]["name"] == "Big%20Movie.MOV"
    assert job["application"]["id"] == account.application_id
    pending = huey.pending()
    assert huey.pending_count() == before + 1
    assert pending[-1].name == "run_job" and pending[-1].args == (job["id"],)
    with db.read() as session:
        input_file = session.get(File, job["input"]["file"]["id"])
    assert input_file.job_id == job["id"] and input_file.storage == "extern"


def test_running_the_task_of_a_job_without_its_input_fails_it_with_the_documented_code(
    client: TestClient, account: Account
) -> None:
    job = submit_job(client, account)
    client.app.state.queue.run_job.call_local(job["id"])  # type: ignore[attr-defined]
    ended = client.get(f"/v1/jobs/{job['id']}", headers=account.headers).json()["job"]
    assert (ended["status"], ended["error_code"]) == ("FAILURE", "0x0050010")
    assert ended["error_msg"] == "Input file not found: input uploads/abc/movie.mp4 is not in the pipeline's store"
    client.app.state.queue.run_job.call_local("0" * 24)  # type: ignore[attr-defined]  # an unknown job is skipped quietly


@pytest.mark.parametrize(
    "job",
    [
        {},
        {"input": {"input_name": "a.mp4"}, "outputs": [{"preset": {"id": PRESET_720P}}]},  # no pipeline
        {"pipeline": {"id": "PIPE"}, "outputs": [{"preset": {"id": PRESET_720P}}]},  # no input
        {"pipeline": {"id": "PIPE"}, "input": {"input_name": ""}, "outputs": [{"preset": {"id": PRESET_720P}}]},
        {"pipeline": {"id": "PIPE"}, "input": {"input_name": 5}, "outputs": [{"preset": {"id": PRESET_720P}}]},
        {"pipeline": {"id": "PIPE"}, "input": {"input_name": "a.mp4"}, "outputs": []},
        {"pipeline": {"id": "PIPE"}, "input": {"input_name": "a.mp4"}, "outputs": "all"},
        {"pipeline": {"id": "PIPE"}, "input": {"input_name": "a.mp4"}, "outputs": [{}]},
        {"pipeline": {"id": "PIPE"}, "input": {"input_name": "a.mp4"}, "outputs": [{"preset": {"id": "0" * 24}}]},
        {"pipeline": {"id": "PIPE"}, "input": {"input_name": "a.mp4"}, "outputs": [{"preset": {"id": 7}}]},
        {"pipeline": {"id": "0" * 24}, "input": {"input_name": "a.mp4"}, "outputs": [{"preset": {"id": PRESET_720P}}]},
        {"pipeline": {"id": "PIPE"}, "pipeline_id": "PIPE", "input": {"input_name": "a.mp4"}, "outputs": [{"preset": {"id": PRESET_720P}}]},
        {"pipeline": {"id": "PIPE"}, "input": {"input_name": "a.mp4"}, "outputs": [{"preset": {"id": PRESET_720P}}], "autograph": {"watermark_strength": "max"}},
        {"pipeline": {"id": "PIPE"}, "input": {"input_name": "a.mp4"}, "outputs": [{"preset": {"id": PRESET_720P}}], "autograph": True},
        {"pipeline": {"id": "PIPE"}, "input": {"input_name": "a.mp4"}, "outputs": [{"preset": {"id": PRESET_720P}}], "user_data": 12},
        {"pipeline": {"id": "PIPE"}, "input": {"input_name": "a.mp4", "start_time": -1}, "outputs": [{"preset": {"id": PRESET_720P}}]},
        {"pipeline": {"id": "PIPE"}, "input": {"input_name": "a.mp4"}, "outputs": [{"preset": {"id": PRESET_720P}, "settings": {"video": {"width": "wide"}}}]},
        {"pipeline": {"id": "PIPE"}, "input": {"input_name": "a.mp4"}, "outputs": [{"preset": {"id": PRESET_720P}, "thumbnails": [{"thumbnail_names": "t"}]}]},
        {"pipeline": {"id": "PIPE"}, "input": {"input_name": "a.mp4"}, "outputs": [{"preset": {"id": PRESET_720P}}], "colour": "red"},
    ],
)
def test_bad_job_bodies_are_400(client: TestClient, account: Account, job: dict[str, Any]) -> None:
    body = {"job": _with_pipeline(job, account.pipeline_id)}
    response = client.post("/v1/jobs/", json=body, headers=account.headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["error_code"] == "0x0050001" and error["error_message"].startswith("Invalid Input")


def _with_pipeline(value: Any, pipeline_id: str) -> Any:
    if isinstance(value, dict):
        return {k: _with_pipeline(v, pipeline_id) for k, v in value.items()}
    return pipeline_id if value == "PIPE" else value


def test_bad_envelopes_are_400(client: TestClient, account: Account) -> None:
    for body in ([], {"jobs": {}}, "job", None):
        response = client.post("/v1/jobs/", json=body, headers=account.headers)
        assert response.status_code == 400 and response.json()["error"]["error_code"] == "0x0050001"


def test_unique_custom_key_is_unique_per_account(client: TestClient, account: Account, other_account: Account) -> None:
    submit_job(client, account, unique_custom_key="k-1")
    again = client.post("/v1/jobs/", json=job_body(account, unique_custom_key="k-1"), headers=account.headers)
    assert again.status_code == 400 and "k-1" in again.json()["error"]["error_message"]
    submit_job(client, other_account, unique_custom_key="k-1")


def test_optional_keys_appear_only_when_submitted(client: TestClient, account: Account) -> None:
    plain = submit_job(client, account)
    titled = submit_job(client, account, title="Trailer", unique_custom_key=None, input={"input_name": "a.mp4", "start_time": 1.5})
    shown = client.get(f"/v1/jobs/{plain['id']}?show_null=true", headers=account.headers).json()["job"]
    assert "title" not in shown and "unique_custom_key" not in shown and "start_time" not in shown["input"]
    shown = client.get(f"/v1/jobs/{titled['id']}?show_null=true", headers=account.headers).json()["job"]
    assert shown["title"] == "Trailer" and shown["unique_custom_key"] is None and shown["input"]["start_time"] == 1.5


def test_filters(client: TestClient, account: Account, db) -> None:  # type: ignore[no-untyped-def]
    a = submit_job(client, account, user_data="alpha", input={"input_name": "uploads/x/Trailer_Final.MP4"})
    b = submit_job(client, account, user_data="beta", autograph={"watermark_strength": "strong"})
    c = submit_job(client, account, user_data="beta", input={"input_name": "s3://bucket/feature.mkv"})
    finish_job(db, c["id"], status="SUCCESS", percentage=100)
    with db.write() as session:  # finished long ago: not "in progress"
        session.execute(update(Job).where(Job.id == c["id"]).values(finished_at=1))

    def ids(query: str) -> set[str]:
        response = client.get(f"/v1/jobs/?{query}", headers=account.headers)
        assert response.status_code == 200, response.text
        return {job["id"] for job in response.json()["jobs"]}

    assert ids("user_data=beta") == {b["id"], c["id"]}
    assert ids("status=SUCCESS") == {c["id"]}
    assert ids("status=QUEUED") == {a["id"], b["id"]}
    assert ids("autograph=true") == {b["id"]}
    assert ids("autograph=false") == {a["id"], c["id"]}
    assert ids("inprogress=true") == {a["id"], b["id"]}
    assert ids("inprogress=false") == {c["id"]}
    assert ids("input.file.name=trailer_final") == {a["id"]}
    assert ids("input.file.name=%25") == set()  # wildcards are literal
    assert ids(f"pipeline.id={account.pipeline_id}") == {a["id"], b["id"], c["id"]}
    assert ids(f"pipeline.id={'0' * 24}") == set()
    created = client.get(f"/v1/jobs/{b['id']}", headers=account.headers).json()["job"]["created_at"]
    assert ids(f"from_date={created}") >= {b["id"], c["id"]} and a["id"] not in ids(f"from_date={created}")
    assert ids(f"to_date={created}") == {a["id"], b["id"]}
    assert ids("bin_data=true&user_data=alpha") == {a["id"]}
    for bad in ("status=DONE", "autograph=maybe", "inprogress=2", "from_date=yesterday", "bin_data=x"):
        response = client.get(f"/v1/jobs/?{bad}", headers=account.headers)
        assert response.status_code == 400 and response.json()["error"]["error_code"] == "0x0050001", bad


def test_recently_finished_counts_as_in_progress(client: TestClient, account: Account, db) -> None:  # type: ignore[no-untyped-def]
    job = submit_job(client, account)
    finish_job(db, job["id"], status="FAILURE", percentage=3)
    with db.write() as session:
        session.execute(update(Job).where(Job.id == job["id"]).values(finished_at=int(time.time() * 1000) - 60_000))
    listed = client.get("/v1/jobs/?inprogress=true", headers=account.headers).json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]


def test_delete_cancels_or_deletes(client: TestClient, account: Account, db) -> None:  # type: ignore[no-untyped-def]
    queued = submit_job(client, account)
    done = submit_job(client, account)
    finish_job(db, done["id"], status="SUCCESS", percentage=100)
    for job in (queued, done):
        response = client.delete(f"/v1/jobs/{job['id']}", headers=account.headers)
        assert response.status_code == 200 and response.json() == {"result": {"status": "SUCCESS"}}
        gone = client.get(f"/v1/jobs/{job['id']}", headers=account.headers)
        assert gone.status_code == 404
        assert gone.json() == {"error": {"error_code": "0x0050005", "error_message": "Job does not exist"}}
        with db.read() as session:
            assert list(session.scalars(select(File).where(File.job_id == job["id"]))) == []
    assert client.delete(f"/v1/jobs/{queued['id']}", headers=account.headers).status_code == 404
    # The worker finds nothing to do for a cancelled job.
    client.app.state.queue.run_job.call_local(queued["id"])  # type: ignore[attr-defined]


def test_expand_embeds_only_the_named_references(client: TestClient, account: Account) -> None:
    job = submit_job(client, account)
    body = client.get(f"/v1/jobs/{job['id']}?expand=preset,pipeline", headers=account.headers).json()["job"]
    assert body["pipeline"]["name"] == "Default Pipeline"
    preset = body["outputs"][0]["preset"]
    assert preset["name"] == "MP4 720p H.264 AAC"
    assert set(preset["target_format"]["vcodec"]["codec"]) == {"id", "href"}  # not expanded further
    assert set(body["user"]) == {"id", "href"}
    full = client.get(f"/v1/jobs/{job['id']}?expand_all=true", headers=account.headers).json()["job"]
    assert full["outputs"][0]["preset"]["target_format"]["vcodec"]["codec"]["name"] == "H.264"
    assert full["user"]["password"] == "*******"
    assert full["input"]["file"]["name"] == "movie.mp4"
    assert set(full["input"]["file"]["job"]) == {"id", "href"}  # no job inside its own file
