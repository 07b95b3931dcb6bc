"""The error envelope on every kind of failure: always a 4xx envelope for bad input, never a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from leaktrace.api.errors import FAMILIES, family_for_path
from tests.api.helpers import Account, job_body, xml_to_data


def test_malformed_json(client: TestClient, account: Account) -> None:
    for path in ("/v1/jobs/", "/v1/backtraces/?job_id=" + "0" * 24, f"/v1/users/{account.user_id}"):
        method = "PUT" if "users" in path else "POST"
        response = client.request(method, path, content=b'{"job": {', headers={**account.headers, "content-type": "application/json"})
        assert response.status_code == 400, path
        error = response.json()["error"]
        assert error["error_code"] == family_for_path(path).invalid_input
        assert "malformed JSON" in error["error_message"]


def test_huge_bodies_are_refused(client: TestClient, account: Account) -> None:
    huge = job_body(account, user_data="x" * 100_000)  # the test app accepts 64 KiB
    response = client.post("/v1/jobs/", json=huge, headers=account.headers)
    assert response.status_code == 413
    assert response.json() == {"error": {"error_code": "0x0000007", "error_message": "Request body too large"}}

    def chunks():  # no Content-Length: counted while reading
        for _ in range(100):
            yield b" " * 1024

    streamed = client.post("/v1/jobs/", content=chunks(), headers={**account.headers, "content-type": "application/json"})
    assert streamed.status_code == 413 and streamed.json()["error"]["error_code"] == "0x0000007"


def test_unknown_route_and_method(client: TestClient, account: Account) -> None:
    missing = client.get("/v1/nothing-here", headers=account.headers)
    assert missing.status_code == 404
    assert missing.json() == {"error": {"error_code": "0x0000005", "error_message": "Resource does not exist"}}
    wrong = client.patch("/v1/jobs/", headers=account.headers)
    assert wrong.status_code == 405 and wrong.json()["error"]["error_code"] == "0x0000006"


def test_errors_follow_the_requested_format(client: TestClient) -> None:
    response = client.get("/v1/jobs/?format=xml&human=true")
    assert response.status_code == 401 and response.headers["content-type"].startswith("application/xml")
    assert xml_to_data(response.content) == {"error": {"error_code": "0x0000002", "error_message": "Authentication required"}}
    # A bad format value is itself the error, reported as JSON.
    response = client.get("/v1/jobs/?format=yaml", headers={"Authorization": "Bearer x"})
    assert response.headers["content-type"].startswith("application/json")


def test_trailing_slash_optional_without_redirect(client: TestClient, account: Account) -> None:
    for path in ("/v1/jobs", "/v1/jobs/", "/v1/backtraces", "/v1/titles/backtraces/"):
        response = client.get(path, headers=account.headers, follow_redirects=False)
        assert response.status_code == 200, path
    created = client.post("/v1/jobs", json=job_body(account), headers=account.headers, follow_redirects=False)
    assert created.status_code == 201
    item = created.json()["job"]["id"]
    assert client.get(f"/v1/jobs/{item}/", headers=account.headers).status_code == 200


@pytest.mark.parametrize(("path", "family"), [("/v1/jobs/abc", "jobs"), ("/v1/titles/backtraces/", "backtraces"), ("/v1/pipelines", "pipelines"), ("/v1/files/1", "files")])
def test_family_for_path(path: str, family: str) -> None:
    assert family_for_path(path) == FAMILIES[family]


def test_codes_are_0x_and_seven_hex_digits() -> None:
    import re

    for family in FAMILIES.values():
        for code in (family.invalid_input, family.not_found):
            assert re.fullmatch(r"0x[0-9a-f]{7}", code), code


def test_openapi_and_docs(client: TestClient) -> None:
    spec = client.get("/v1/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/backtraces", "/v1/oauth2/token", "/v1/users/{user_id}"} <= set(spec["paths"])
    listing = spec["paths"]["/v1/jobs"]["get"]["responses"]
    assert {"jobs", "total", "start", "limit", "first", "last", "next", "prev"} <= set(
        listing["200"]["content"]["application/json"]["schema"]["properties"]
    )
    assert listing["404"]["content"]["application/json"]["example"]["error"]["error_code"] == "0x0050005"
    job = listing["200"]["content"]["application/json"]["schema"]["properties"]["jobs"]["items"]["properties"]
    assert job["outputs"]["items"]["properties"]["thumbnails"]["items"]["properties"]["thumbnail_preset"] == {"type": "string"}
    backtrace = spec["paths"]["/v1/backtraces/{backtrace_id}"]["get"]["responses"]["200"]["content"]["application/json"]
    stats = backtrace["schema"]["properties"]["backtrace"]["properties"]["extracted_data"]["items"]["properties"]["access_stats"]
    assert stats["items"]["properties"]["percentage_obtained"] == {"type": "string"}
    assert "JobRequest" in spec["components"]["schemas"]
    assert "swagger" in client.get("/docs").text.lower()


def test_internal_errors_are_enveloped(client: TestClient, account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    from leaktrace.store import jobs

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(jobs, "get", broken)
    quiet = TestClient(client.app, raise_server_exceptions=False)
    response = quiet.get(f"/v1/jobs/{'0' * 24}", headers=account.headers)
    assert response.status_code == 500
    assert response.json() == {"error": {"error_code": "0x0000001", "error_message": "Internal Error"}}
    assert "disk on fire" not in response.text
