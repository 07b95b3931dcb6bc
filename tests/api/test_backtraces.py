"""Submitting and listing backtraces."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import Account, finish_backtrace, submit_backtrace, submit_job

STATS = {
    "ip_address": "203.0.113.9", "ip_country": "Estonia", "ip_type": "UNK", "user_agent": "N/A",
    "accept_language": "N/A", "first_accessed_at": 1679586178400, "percentage_obtained": "100%",
    "highest_resolution": "352p", "streaming_only": "no",
}  # fmt: skip


@pytest.fixture
def autograph_job(client: TestClient, account: Account) -> dict[str, Any]:
    return submit_job(client, account, autograph={"watermark_strength": "light"})


def test_submit_queues_the_backtrace(client: TestClient, account: Account, autograph_job: dict[str, Any]) -> None:
    huey = client.app.state.queue.huey  # type: ignore[attr-defined]
    created = submit_backtrace(client, account, autograph_job["id"])
    assert created["status"] == "QUEUED"
    assert huey.pending()[-1].name == "run_backtrace" and huey.pending()[-1].args == (created["id"],)
    client.app.state.queue.run_backtrace.call_local(created["id"])  # type: ignore[attr-defined]
    shown = client.get(f"/v1/titles/backtraces/{created['id']}?show_null=true", headers=account.headers).json()["backtrace"]
    assert shown["status"] == "QUEUED" and shown["extracted_data"] is None
    assert shown["job"] == {"id": autograph_job["id"]} and shown["application"] == {"id": account.application_id}
    assert shown["href"].endswith(f"/v1/backtraces/{created['id']}")


def test_pipeline_id_spelling_accepted(client: TestClient, account: Account, autograph_job: dict[str, Any]) -> None:
    body = {"backtrace": {"pipeline_id": account.pipeline_id, "input": {"input_name": "leak.mp4"}}}
    response = client.post(f"/v1/titles/backtraces?job_id={autograph_job['id']}", json=body, headers=account.headers)
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("query", "backtrace"),
    [
        ("", {"pipeline": {"id": "PIPE"}, "input": {"input_name": "a.mp4"}}),  # no job_id
        ("job_id=" + "0" * 24, {"pipeline": {"id": "PIPE"}, "input": {"input_name": "a.mp4"}}),
        ("job_id=nonsense", {"pipeline": {"id": "PIPE"}, "input": {"input_name": "a.mp4"}}),
        ("job_id=JOB", {"input": {"input_name": "a.mp4"}}),
        ("job_id=JOB", {"pipeline": {"id": "0" * 24}, "input": {"input_name": "a.mp4"}}),
        ("job_id=JOB", {"pipeline": {"id": "PIPE"}}),
        ("job_id=JOB", {"pipeline": {"id": "PIPE"}, "input": {"input_name": ""}}),
        ("job_id=JOB", {"pipeline": {"id": "PIPE"}, "input": {"input_name": ["a"]}}),
        ("job_id=JOB", {"pipeline": "PIPE", "input": {"input_name": "a.mp4"}}),
        ("job_id=JOB", {"pipeline": {"id": "PIPE"}, "input": {"input_name": "a.mp4"}, "speed": "fast"}),
        ("job_id=PLAIN", {"pipeline": {"id": "PIPE"}, "input": {"input_name": "a.mp4"}}),  # job without autograph
    ],
)
def test_bad_backtrace_requests_are_400(
    client: TestClient, account: Account, autograph_job: dict[str, Any], query: str, backtrace: dict[str, Any]
) -> None:
    plain = submit_job(client, account)
    query = query.replace("PLAIN", plain["id"]).replace("JOB", autograph_job["id"])
    body = {"backtrace": {k: ({"id": account.pipeline_id} if v == {"id": "PIPE"} else v) for k, v in backtrace.items()}}
    response = client.post(f"/v1/backtraces/?{query}", json=body, headers=account.headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["error_code"] == "0x0300001"


def test_unknown_backtrace_is_404(client: TestClient, account: Account) -> None:
    for path in (f"/v1/backtraces/{'0' * 24}", "/v1/titles/backtraces/not-an-id"):
        response = client.get(path, headers=account.headers)
        assert response.status_code == 404
        assert response.json() == {"error": {"error_code": "0x0300007", "error_message": "Backtrace does not exist"}}


def test_tag_and_status_filters(client: TestClient, account: Account, autograph_job: dict[str, Any], db) -> None:  # type: ignore[no-untyped-def]
    first = submit_backtrace(client, account, autograph_job["id"])
    second = submit_backtrace(client, account, autograph_job["id"])
    queued = submit_backtrace(client, account, autograph_job["id"])
    finish_backtrace(db, first["id"], [{"autograph_tag": "viewer-Alice_01", "access_stats": [STATS]}])
    finish_backtrace(db, second["id"], [{"autograph_tag": "viewer-bob", "access_stats": [STATS]}])

    def ids(query: str) -> list[str]:
        response = client.get(f"/v1/backtraces/?{query}", headers=account.headers)
        assert response.status_code == 200, response.text
        return [b["id"] for b in response.json()["backtraces"]]

    assert ids("extracted_data.autograph_tag=alice") == [first["id"]]
    assert sorted(ids("extracted_data.autograph_tag=viewer-")) == sorted([first["id"], second["id"]])
    assert ids("extracted_data.autograph_tag=_0") == [first["id"]]  # "_" is literal, not a wildcard
    assert ids("extracted_data.autograph_tag=carol") == []
    assert ids("status=QUEUED") == [queued["id"]]
    assert sorted(ids("status=SUCCESS")) == sorted([first["id"], second["id"]])
    assert client.get("/v1/backtraces/?status=PROCESSING", headers=account.headers).status_code == 400
    shown = client.get(f"/v1/backtraces/{first['id']}", headers=account.headers).json()["backtrace"]
    assert shown["extracted_data"] == [{"autograph_tag": "viewer-Alice_01", "access_stats": [{**STATS, "ip_address": "203.0.113.9"}]}]
    assert ids("sort=extracted_data&direction=-1")  # any key sorts, even one without a column


def test_deleting_the_job_keeps_its_backtraces(client: TestClient, account: Account, autograph_job: dict[str, Any], db) -> None:  # type: ignore[no-untyped-def]
    created = submit_backtrace(client, account, autograph_job["id"])
    finish_backtrace(db, created["id"], [{"autograph_tag": "kept", "access_stats": [STATS]}])
    assert client.delete(f"/v1/jobs/{autograph_job['id']}", headers=account.headers).status_code == 200
    shown = client.get(f"/v1/backtraces/{created['id']}?show_null=true", headers=account.headers).json()["backtrace"]
    assert shown["job"] is None and shown["status"] == "SUCCESS"
    assert [entry["autograph_tag"] for entry in shown["extracted_data"]] == ["kept"]
