"""Submitting and listing backtraces."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from leaktrace.store.models import AccessRecord, Backtrace
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


def test_list_shows_each_tag_with_its_access_records_in_time_order(
    client: TestClient, account: Account, other_account: Account, autograph_job: dict[str, Any], db  # type: ignore[no-untyped-def]
) -> None:
    both = submit_backtrace(client, account, autograph_job["id"])
    one = submit_backtrace(client, account, autograph_job["id"])
    queued = submit_backtrace(client, account, autograph_job["id"])
    finish_backtrace(db, both["id"], [{"autograph_tag": "viewer-a", "access_stats": []}, {"autograph_tag": "viewer-b", "access_stats": []}])
    finish_backtrace(db, one["id"], [{"autograph_tag": "viewer-a", "access_stats": []}])

    def record(user_id: str, tag: str, first_accessed_at: int, ip_address: str) -> AccessRecord:
        return AccessRecord(user_id=user_id, job_id=autograph_job["id"], tag=tag, ip_address=ip_address,
                            first_accessed_at=first_accessed_at, percentage_obtained=12.4, streaming_only=True)  # fmt: skip

    with db.write() as session:
        session.add_all([
            record(account.user_id, "viewer-a", 2000, "198.51.100.2"),
            record(account.user_id, "viewer-a", 1000, "198.51.100.1"),
            record(account.user_id, "viewer-b", 3000, "198.51.100.3"),
            record(account.user_id, "viewer-c", 4000, "198.51.100.4"),  # a tag no backtrace extracted
            record(other_account.user_id, "viewer-a", 500, "192.0.2.1"),  # not this account's record
        ])  # fmt: skip

    def stats(ip_address: str, first_accessed_at: int) -> dict[str, Any]:
        return {"ip_address": ip_address, "ip_country": "N/A", "ip_type": "UNK", "user_agent": "N/A", "accept_language": "N/A",
                "first_accessed_at": first_accessed_at, "percentage_obtained": "12%", "streaming_only": "yes"}  # fmt: skip

    viewer_a = {"autograph_tag": "viewer-a", "access_stats": [stats("198.51.100.1", 1000), stats("198.51.100.2", 2000)]}
    viewer_b = {"autograph_tag": "viewer-b", "access_stats": [stats("198.51.100.3", 3000)]}
    listed = client.get("/v1/backtraces/", headers=account.headers).json()["backtraces"]
    assert {b["id"]: b.get("extracted_data") for b in listed} == {
        both["id"]: [viewer_a, viewer_b],
        one["id"]: [viewer_a],
        queued["id"]: None,
    }


def test_tag_filter_totals_count_each_matching_backtrace_once(
    client: TestClient, account: Account, other_account: Account, autograph_job: dict[str, Any], db  # type: ignore[no-untyped-def]
) -> None:
    def finished(owner: Account, job_id: str, tags: list[str], status: str = "SUCCESS") -> str:
        backtrace_id = submit_backtrace(client, owner, job_id)["id"]
        finish_backtrace(db, backtrace_id, [{"autograph_tag": tag, "access_stats": []} for tag in tags])
        with db.write() as session:
            session.get(Backtrace, backtrace_id).status = status
        return backtrace_id

    finished(account, autograph_job["id"], ["viewer-x1", "viewer-x2"])  # two matching tags, one backtrace
    finished(account, autograph_job["id"], ["viewer-x3"])
    finished(account, autograph_job["id"], ["viewer-x4"], status="FAILURE")
    finished(account, autograph_job["id"], ["other"])
    submit_backtrace(client, account, autograph_job["id"])  # queued, no tags yet
    other_job = submit_job(client, other_account, autograph={"watermark_strength": "light"})
    finished(other_account, other_job["id"], ["viewer-x5"])

    def total(query: str) -> int:
        # limit=1 fills the page, so the total has to be counted rather than read off the page.
        response = client.get(f"/v1/backtraces/?limit=1&{query}", headers=account.headers)
        assert response.status_code == 200, response.text
        return response.json()["total"]

    assert total("extracted_data.autograph_tag=VIEWER-X") == 3
    assert total("extracted_data.autograph_tag=viewer-x&status=SUCCESS") == 2
    assert total("extracted_data.autograph_tag=viewer-x&status=FAILURE") == 1
    assert total("extracted_data.autograph_tag=-x") == 3
    assert total("extracted_data.autograph_tag=") == 4  # every backtrace with a tag
    assert total("status=SUCCESS") == 3
    assert total("") == 5
