"""Tokens, scopes, expiry and tenant isolation."""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from leaktrace.config import Settings
from leaktrace.store.models import AccessToken, Application
from tests.api.helpers import Account, get_token, new_account, submit_backtrace, submit_job

INVALID_TOKEN = {"error": {"error_code": "0x0000003", "error_message": "Invalid access token"}}


@pytest.mark.parametrize("grant_type", ["client_credential", "client_credentials"])
def test_token_grant_spellings(client: TestClient, account: Account, grant_type: str) -> None:
    response = client.post(
        "/v1/oauth2/token/",
        data={"grant_type": grant_type, "client_id": account.client_id, "client_secret": account.client_secret, "scope": "mediahub"},
    )
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["access_token", "token_type", "expires_in", "scope"]
    assert len(body["access_token"]) == 64
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["scope"] == "mediahub"


def test_expires_in_from_query_and_limits(client: TestClient, account: Account, settings: Settings) -> None:
    form = {"grant_type": "client_credential", "client_id": account.client_id, "client_secret": account.client_secret}
    response = client.post("/v1/oauth2/token/?human=true&expires_in=7200", data=form)
    assert response.json()["expires_in"] == 7200
    too_long = client.post(f"/v1/oauth2/token/?expires_in={settings.token_max_lifetime + 1}", data=form)
    assert too_long.status_code == 400 and too_long.json()["error"]["error_code"] == "0x0010001"
    assert client.post("/v1/oauth2/token/?expires_in=soon", data=form).status_code == 400


def test_token_request_errors(client: TestClient, account: Account) -> None:
    good = {"grant_type": "client_credential", "client_id": account.client_id, "client_secret": account.client_secret}
    cases = [
        ({**good, "grant_type": "password"}, 400, "0x0010001"),
        ({k: v for k, v in good.items() if k != "client_secret"}, 400, "0x0010001"),
        ({**good, "client_secret": account.client_secret[:-2] + "xx"}, 401, "0x0010003"),
        ({**good, "client_id": "0" * 24}, 401, "0x0010003"),
        ({**good, "scope": "everything"}, 400, "0x0010001"),
    ]
    for form, status, code in cases:
        response = client.post("/v1/oauth2/token/", data=form)
        assert (response.status_code, response.json()["error"]["error_code"]) == (status, code), form


def test_json_body_token_request(client: TestClient, account: Account) -> None:
    body = {"grant_type": "client_credentials", "client_id": account.client_id, "client_secret": account.client_secret}
    assert client.post("/v1/oauth2/token/", json=body).status_code == 200
    assert client.post("/v1/oauth2/token/", content=b"{nope", headers={"content-type": "application/json"}).status_code == 400


def test_scope_beyond_application_refused(client: TestClient, settings: Settings) -> None:
    limited = new_account(client, settings, scopes=["mediahub_read"])
    response = client.post(
        "/v1/oauth2/token/",
        data={"grant_type": "client_credential", "client_id": limited.client_id, "client_secret": limited.client_secret, "scope": "autograph"},
    )
    assert response.status_code == 400
    assert "autograph" in response.json()["error"]["error_message"]


def test_missing_credentials_is_401(client: TestClient) -> None:
    response = client.get("/v1/jobs/")
    assert response.status_code == 401
    assert response.json() == {"error": {"error_code": "0x0000002", "error_message": "Authentication required"}}


def test_unknown_token_is_403(client: TestClient) -> None:
    response = client.get("/v1/jobs/", headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 403 and response.json() == INVALID_TOKEN


def test_access_token_query_parameter(client: TestClient, account: Account) -> None:
    response = client.get(f"/v1/jobs/?access_token={account.token}")
    assert response.status_code == 200
    assert "access_token" not in response.json()["first"]["href"]  # never echoed into links


def test_expired_token_is_403(client: TestClient, account: Account, db) -> None:  # type: ignore[no-untyped-def]
    token_hash = hashlib.sha256(account.token.encode()).hexdigest()
    with db.write() as session:
        session.execute(update(AccessToken).where(AccessToken.token_hash == token_hash).values(expires_at=1))
    response = client.get("/v1/jobs/", headers=account.headers)
    assert response.status_code == 403 and response.json() == INVALID_TOKEN
    get_token(client, account.client_id, account.client_secret)  # issuing a token sweeps expired ones
    with db.read() as session:
        assert session.scalars(select(AccessToken).where(AccessToken.token_hash == token_hash)).first() is None


def test_disabled_application_tokens_stop_working(client: TestClient, account: Account, db) -> None:  # type: ignore[no-untyped-def]
    with db.write() as session:
        session.execute(update(Application).where(Application.id == account.application_id).values(enabled=False))
    assert client.get("/v1/jobs/", headers=account.headers).status_code == 403


def test_tokens_and_secrets_are_not_stored_in_clear(account: Account, db) -> None:  # type: ignore[no-untyped-def]
    with db.read() as session:
        app = session.get(Application, account.application_id)
        hashes = list(session.scalars(select(AccessToken.token_hash).where(AccessToken.application_id == app.id)))
    assert account.client_secret not in app.secret_encrypted
    assert account.token not in hashes and hashlib.sha256(account.token.encode()).hexdigest() in hashes


@pytest.mark.parametrize(
    ("scope", "allowed", "refused"),
    [
        ("mediahub_read", [("GET", "/v1/jobs/")], [("POST", "/v1/jobs/"), ("GET", "/v1/backtraces/"), ("GET", "/v1/users/")]),
        ("mediahub_submit_jobs", [("POST", "/v1/jobs/")], [("GET", "/v1/jobs/"), ("DELETE", "/v1/jobs/{job}")]),
        ("mediahub_write", [("POST", "/v1/jobs/"), ("DELETE", "/v1/jobs/{job}")], [("GET", "/v1/jobs/")]),
        ("mediahub", [("GET", "/v1/jobs/"), ("POST", "/v1/jobs/")], [("GET", "/v1/backtraces/"), ("GET", "/v1/users/")]),
        ("autograph", [("GET", "/v1/backtraces/"), ("GET", "/v1/titles/backtraces/")], [("GET", "/v1/jobs/")]),
        ("me", [("GET", "/v1/users/")], [("GET", "/v1/jobs/"), ("GET", "/v1/backtraces/")]),
    ],
)
def test_scopes_enforced_per_route(
    client: TestClient, account: Account, scope: str, allowed: list[tuple[str, str]], refused: list[tuple[str, str]]
) -> None:
    token = get_token(client, account.client_id, account.client_secret, scope=scope)
    headers = {"Authorization": f"Bearer {token}"}
    body = {"job": {"pipeline": {"id": account.pipeline_id}, "input": {"input_name": "a.mp4"},
                    "outputs": [{"preset": {"id": "525ce63284aed52635e85e04"}}]}}  # fmt: skip
    for method, path in allowed + refused:
        job = submit_job(client, account)  # a fresh job for each DELETE
        response = client.request(method, path.format(job=job["id"]), headers=headers, json=body if method == "POST" else None)
        if (method, path) in allowed:
            assert response.status_code in (200, 201), (scope, method, path, response.text)
        else:
            assert response.status_code == 403, (scope, method, path)
            assert response.json()["error"]["error_code"] == "0x0000004"


def test_tenant_isolation(client: TestClient, account: Account, other_account: Account) -> None:
    job = submit_job(client, account, autograph={"watermark_strength": "light"})
    backtrace = submit_backtrace(client, account, job["id"])
    theirs = other_account.headers
    assert client.get(f"/v1/jobs/{job['id']}", headers=theirs).json()["error"]["error_code"] == "0x0050005"
    assert client.get(f"/v1/backtraces/{backtrace['id']}", headers=theirs).json()["error"]["error_code"] == "0x0300007"
    assert client.delete(f"/v1/jobs/{job['id']}", headers=theirs).status_code == 404
    assert client.get(f"/v1/users/{account.user_id}", headers=theirs).status_code == 404
    assert client.get(f"/v1/applications/{account.application_id}", headers=theirs).status_code == 404
    assert client.get("/v1/jobs/", headers=theirs).json()["total"] == 0
    assert client.get("/v1/backtraces/", headers=theirs).json()["total"] == 0
    # Their own pipeline cannot be used with my job, nor my pipeline by them.
    body = {"backtrace": {"pipeline": {"id": account.pipeline_id}, "input": {"input_name": "x.mp4"}}}
    assert client.post(f"/v1/backtraces/?job_id={job['id']}", json=body, headers=theirs).status_code == 400
    other_job = {"job": {"pipeline": {"id": account.pipeline_id}, "input": {"input_name": "a.mp4"},
                         "outputs": [{"preset": {"id": "525ce63284aed52635e85e04"}}]}}  # fmt: skip
    assert client.post("/v1/jobs/", json=other_job, headers=theirs).status_code == 400
    # Expanding a reference to someone else's object never embeds it.
    mine = client.get(f"/v1/jobs/{job['id']}?expand_all=true", headers=account.headers).json()["job"]
    assert mine["pipeline"]["name"] == "Default Pipeline"
