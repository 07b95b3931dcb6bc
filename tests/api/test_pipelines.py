"""`/v1/pipelines/`: CRUD, validation, the Default Pipeline, tenant isolation, input paths."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from leaktrace.store.errors import InvalidInput
from leaktrace.store.models import Pipeline
from leaktrace.store.pipelines import resolve_input
from tests.api.helpers import Account, submit_job

INVALID = "0x0170001"
NOT_FOUND = "0x0170002"

FULL = {
    "name": "Studio ingest",
    "description": "Masters from the studio's bucket",
    "cancel_timeout": 600,
    "default_object_timeout": "3600",  # the reference's example sends a string
    "enable_backtrace_pings": True,
    "input_download_dir": "s3://key:secret@eu-west-1/masters/",
    "image_download_dir": "https://images.example.com/logos/",
    "download_options": {"auto_convert_input": "off", "https_certificate_check": True},
    "output_upload_dir": "sftp://user:pw@files.example.com:22/out/",
    "image_upload_dir": "https://images.example.com/thumbs/",
    "upload_options": {"s3_allow_read": "everyone", "s3_reduced_redundancy": False},
    "store_options": {"mode": "temporary"},
    "ping_urls": {"error": "https://hooks.example.com/error", "finished": "https://hooks.example.com/done"},
}


def create(client: TestClient, account: Account, **fields: Any) -> dict[str, Any]:
    body = {"name": "p", "description": "d", **fields}
    response = client.post("/v1/pipelines/?show_null=true", json={"pipeline": body}, headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()["pipeline"]


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert list(response.json()) == ["error"]
    assert response.json()["error"]["error_code"] == code


def test_every_account_has_a_default_pipeline_with_a_root_folder(client: TestClient, account: Account) -> None:
    response = client.get("/v1/pipelines/", headers=account.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 1
    [pipeline] = body["pipelines"]
    assert pipeline["name"] == "Default Pipeline"
    assert pipeline["id"] == account.pipeline_id
    folder = client.get(f"/v1/files/{pipeline['file']['id']}", headers=account.headers).json()["file"]
    assert (folder["type"], folder["name"], folder["pipeline"]["id"]) == ("folder", account.pipeline_id, account.pipeline_id)


def test_create_returns_every_field(client: TestClient, account: Account) -> None:
    pipeline = create(client, account, **FULL)
    user_href = f"https://api.xvid.com/v1/users/{account.user_id}"
    assert pipeline == {
        **{key: value for key, value in FULL.items() if key not in ("ping_urls",)},
        "input_download_dir": "s3://key:*******@eu-west-1/masters/",  # passwords are never echoed
        "output_upload_dir": "sftp://user:*******@files.example.com:22/out/",
        "default_object_timeout": 3600,
        "ping_urls": {"error": "https://hooks.example.com/error", "warning": None, "started": None,
                      "finished": "https://hooks.example.com/done"},
        "file": {"id": pipeline["file"]["id"], "href": f"https://api.xvid.com/v1/files/{pipeline['file']['id']}"},
        "version": 1,
        "user": {"id": account.user_id, "href": user_href},
        "created_at": pipeline["created_at"],
        "updated_at": pipeline["created_at"],
        "id": pipeline["id"],
        "href": f"https://api.xvid.com/v1/pipelines/{pipeline['id']}",
    }  # fmt: skip
    assert list(pipeline)[:3] == ["name", "description", "cancel_timeout"]
    again = client.get(f"/v1/pipelines/{pipeline['id']}?show_null=true", headers=account.headers).json()["pipeline"]
    assert again == pipeline


def test_nulls_are_dropped_without_show_null(client: TestClient, account: Account) -> None:
    created = create(client, account)
    body = client.get(f"/v1/pipelines/{created['id']}", headers=account.headers).json()["pipeline"]
    assert list(body) == ["name", "description", "file", "version", "user", "created_at", "updated_at", "id", "href"]


def test_xml_carries_the_same_pipeline(client: TestClient, account: Account) -> None:
    from tests.api.helpers import as_xml_scalars, xml_to_data

    created = create(client, account, **FULL)
    # show_null also in the expanded case: an empty object and an empty string look alike in XML.
    for query in ("show_null=true", "human=true&show_null=true&expand_all=true"):
        as_json = client.get(f"/v1/pipelines/{created['id']}?{query}", headers=account.headers).json()
        as_xml = client.get(f"/v1/pipelines/{created['id']}?{query}&format=xml", headers=account.headers)
        assert xml_to_data(as_xml.content) == as_xml_scalars(as_json)
    assert as_json["pipeline"]["file"]["type"] == "folder"  # expand_all embedded the root folder


def test_put_is_a_partial_update(client: TestClient, account: Account) -> None:
    created = create(client, account, **FULL)
    change = {"name": "Renamed", "description": None, "ping_urls": {"warning": "http://hooks.example.com/w"},
              "store_options": None}  # fmt: skip
    response = client.put(f"/v1/pipelines/{created['id']}?show_null=true", json={"pipeline": change}, headers=account.headers)
    assert response.status_code == 200, response.text
    updated = response.json()["pipeline"]
    assert updated["name"] == "Renamed"
    assert updated["description"] is None
    assert updated["store_options"] is None
    assert updated["ping_urls"] == {**created["ping_urls"], "warning": "http://hooks.example.com/w"}
    assert updated["input_download_dir"] == created["input_download_dir"] == "s3://key:*******@eu-west-1/masters/"
    assert updated["version"] == 2
    assert updated["updated_at"] >= created["updated_at"]


def test_delete(client: TestClient, account: Account) -> None:
    created = create(client, account)
    response = client.delete(f"/v1/pipelines/{created['id']}", headers=account.headers)
    assert (response.status_code, response.json()) == (200, {"result": {"status": "SUCCESS"}})
    assert_error(client.get(f"/v1/pipelines/{created['id']}", headers=account.headers), 404, NOT_FOUND)
    # Its root folder goes with it.
    folder = client.get(f"/v1/files/{created['file']['id']}", headers=account.headers)
    assert_error(folder, 404, "0x0230002")


def test_default_and_busy_pipelines_cannot_be_deleted(client: TestClient, account: Account) -> None:
    assert_error(client.delete(f"/v1/pipelines/{account.pipeline_id}", headers=account.headers), 400, INVALID)
    busy = create(client, account)
    submit_job(client, account, pipeline={"id": busy["id"]})
    assert_error(client.delete(f"/v1/pipelines/{busy['id']}", headers=account.headers), 400, INVALID)
    assert client.get(f"/v1/pipelines/{busy['id']}", headers=account.headers).status_code == 200
    tracing = create(client, account)
    job = submit_job(client, account, autograph={"watermark_strength": "light"})
    leak = {"backtrace": {"pipeline": {"id": tracing["id"]}, "input": {"input_name": "leaks/copy.mp4"}}}
    assert client.post(f"/v1/backtraces/?job_id={job['id']}", json=leak, headers=account.headers).status_code == 201
    assert_error(client.delete(f"/v1/pipelines/{tracing['id']}", headers=account.headers), 400, INVALID)


def test_list_sorts_and_pages(client: TestClient, account: Account) -> None:
    for name in ("c", "a", "b"):
        create(client, account, name=name)
    body = client.get("/v1/pipelines/?sort=name&direction=-1&limit=2", headers=account.headers).json()
    assert body["total"] == 4
    assert [p["name"] for p in body["pipelines"]] == ["c", "b"]
    assert body["next"]["href"] == "https://api.xvid.com/v1/pipelines/?start=2&limit=2&sort=name&direction=-1"


def test_names_sort_in_code_point_order_on_every_backend(client: TestClient, account: Account) -> None:
    for name in ("b", "B", "a", "_x", "Ä"):
        create(client, account, name=name)
    for query in ("sort=name", "sort=name&limit=3&start=0"):
        body = client.get(f"/v1/pipelines/?{query}", headers=account.headers).json()
        expected = ["B", "Default Pipeline", "_x", "a", "b", "Ä"][: body["limit"]]
        assert [p["name"] for p in body["pipelines"]] == expected


def test_start_is_bounded(client: TestClient, account: Account) -> None:
    far = client.get(f"/v1/pipelines/?start={2**62}", headers=account.headers)
    assert (far.status_code, far.json()["pipelines"], far.json()["total"]) == (200, [], 1)
    assert_error(client.get(f"/v1/pipelines/?start={2**62 + 1}", headers=account.headers), 400, INVALID)
    assert_error(client.get("/v1/pipelines/?start=100000000000000000000000", headers=account.headers), 400, INVALID)


BAD_BODIES = [
    pytest.param({}, id="missing-name-and-description"),
    pytest.param({"name": "x"}, id="missing-description"),
    pytest.param({"name": "", "description": "d"}, id="empty-name"),
    pytest.param({"name": 5, "description": "d"}, id="name-number"),
    pytest.param({"name": ["x"], "description": "d"}, id="name-list"),
    pytest.param({"name": "x", "description": "d", "cancel_timeout": "soon"}, id="timeout-word"),
    pytest.param({"name": "x", "description": "d", "cancel_timeout": -1}, id="timeout-negative"),
    pytest.param({"name": "x", "description": "d", "cancel_timeout": 1.5}, id="timeout-fraction"),
    pytest.param({"name": "x", "description": "d", "cancel_timeout": True}, id="timeout-bool"),
    pytest.param({"name": "x", "description": "d", "default_object_timeout": 10**12}, id="timeout-huge"),
    pytest.param({"name": "x", "description": "d", "enable_backtrace_pings": "maybe"}, id="pings-word"),
    pytest.param({"name": "x", "description": "d", "enable_backtrace_pings": 1}, id="pings-number"),
    pytest.param({"name": "x", "description": "d", "input_download_dir": "/srv/media"}, id="dir-local-path"),
    pytest.param({"name": "x", "description": "d", "input_download_dir": "file:///etc/"}, id="dir-file-uri"),
    pytest.param({"name": "x", "description": "d", "output_upload_dir": "ftp://host/x"}, id="dir-ftp"),
    pytest.param({"name": "x", "description": "d", "image_upload_dir": 7}, id="dir-number"),
    pytest.param({"name": "x", "description": "d", "download_options": {"auto_convert_input": "yes"}}, id="auto-convert"),
    pytest.param({"name": "x", "description": "d", "download_options": "on"}, id="options-string"),
    pytest.param({"name": "x", "description": "d", "download_options": {"unknown": 1}}, id="options-unknown-key"),
    pytest.param({"name": "x", "description": "d", "store_options": {"mode": "forever"}}, id="store-mode"),
    pytest.param({"name": "x", "description": "d", "ping_urls": {"error": "javascript:alert(1)"}}, id="ping-scheme"),
    pytest.param({"name": "x", "description": "d", "ping_urls": {"done": "https://x.example"}}, id="ping-event"),
    pytest.param({"name": "x", "description": "d", "ping_urls": ["https://x.example"]}, id="ping-list"),
    pytest.param({"name": "x", "description": "d", "colour": "blue"}, id="unknown-field"),
    pytest.param({"name": "a\u0000b", "description": "d"}, id="name-nul"),
    pytest.param({"name": "x", "description": "d", "input_download_dir": "https://h.example/\u0000"}, id="dir-nul"),
]


@pytest.mark.parametrize("fields", BAD_BODIES)
def test_bad_create_bodies_are_400(client: TestClient, account: Account, fields: dict[str, Any]) -> None:
    assert_error(client.post("/v1/pipelines/", json={"pipeline": fields}, headers=account.headers), 400, INVALID)


@pytest.mark.parametrize(
    "fields",
    [
        {"name": None},
        {"name": 3},
        {"cancel_timeout": "x"},
        {"input_download_dir": "../up"},
        {"store_options": {"mode": 1}},
        {"id": "525ce63284aed52635e85d05"},
        {"version": 7},
    ],
    ids=["name-null", "name-number", "timeout-word", "dir-relative", "mode-number", "id", "version"],
)
def test_bad_update_bodies_are_400(client: TestClient, account: Account, fields: dict[str, Any]) -> None:
    response = client.put(f"/v1/pipelines/{account.pipeline_id}", json={"pipeline": fields}, headers=account.headers)
    assert_error(response, 400, INVALID)


@pytest.mark.parametrize(
    "raw",
    [b"{", b"[]", b'"pipeline"', b"null", b'{"pipeline": []}', b'{"pipeline": "x"}', b'{"pipelines": {}}', b"\xff\xfe",
     b'{"pipeline": ' + b"[" * 5000 + b"]" * 5000 + b"}", b'{"pipeline": {"name": "x", "description": "d"}} trailing'],
    ids=["truncated", "array", "string", "null", "list-body", "string-body", "wrong-key", "not-utf8", "deeply-nested",
         "trailing-garbage"],
)
def test_malformed_json_is_400(client: TestClient, account: Account, raw: bytes) -> None:
    headers = {**account.headers, "Content-Type": "application/json"}
    assert_error(client.post("/v1/pipelines/", content=raw, headers=headers), 400, INVALID)
    assert_error(client.put(f"/v1/pipelines/{account.pipeline_id}", content=raw, headers=headers), 400, INVALID)


def test_huge_body_is_413(client: TestClient, account: Account) -> None:
    body = {"pipeline": {"name": "x", "description": "d" * 200_000}}
    response = client.post("/v1/pipelines/", json=body, headers=account.headers)
    assert_error(response, 413, "0x0000007")


def test_unknown_ids_are_404(client: TestClient, account: Account) -> None:
    for pipeline_id in ("525ce63284aed52635e85d05", "nope", "0" * 24):
        assert_error(client.get(f"/v1/pipelines/{pipeline_id}", headers=account.headers), 404, NOT_FOUND)
        assert_error(client.put(f"/v1/pipelines/{pipeline_id}", json={"pipeline": {"name": "x"}}, headers=account.headers), 404, NOT_FOUND)
        assert_error(client.delete(f"/v1/pipelines/{pipeline_id}", headers=account.headers), 404, NOT_FOUND)


def test_other_accounts_pipelines_are_404(client: TestClient, account: Account, other_account: Account) -> None:
    theirs = create(client, other_account)
    for pipeline_id in (theirs["id"], other_account.pipeline_id):
        assert_error(client.get(f"/v1/pipelines/{pipeline_id}", headers=account.headers), 404, NOT_FOUND)
        response = client.put(f"/v1/pipelines/{pipeline_id}", json={"pipeline": {"name": "mine"}}, headers=account.headers)
        assert_error(response, 404, NOT_FOUND)
        assert_error(client.delete(f"/v1/pipelines/{pipeline_id}", headers=account.headers), 404, NOT_FOUND)
    listed = client.get("/v1/pipelines/", headers=account.headers).json()["pipelines"]
    assert [p["id"] for p in listed] == [account.pipeline_id]
    assert client.get(f"/v1/pipelines/{theirs['id']}", headers=other_account.headers).json()["pipeline"]["name"] == "p"


def test_writing_needs_the_write_scope(client: TestClient, account: Account, settings: Any) -> None:
    from tests.api.helpers import get_token

    token = get_token(client, account.client_id, account.client_secret, scope="mediahub_read")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/pipelines/", headers=headers).status_code == 200
    assert_error(client.post("/v1/pipelines/", json={"pipeline": {"name": "x", "description": "d"}}, headers=headers), 403, "0x0000004")
    assert_error(client.get("/v1/pipelines/"), 401, "0x0000002")


# ---- input names stay inside the pipeline's folder -----------------------------------------------

INTERNAL = Pipeline(id="6bf3456ed18f734ab4c01f25", user_id="u", name="p", input_download_dir=None)
REMOTE = Pipeline(id="6bf3456ed18f734ab4c01f25", user_id="u", name="p", input_download_dir="https://cdn.example.com/in/")


@pytest.mark.parametrize(
    "input_name",
    [
        "../secret.mp4",
        "uploads/../../secret.mp4",
        "uploads/..",
        "/etc/passwd",
        "//etc/passwd",
        "~/movie.mp4",
        "C:/movie.mp4",
        "uploads\\..\\..\\secret.mp4",
        "%2e%2e/secret.mp4",
        "uploads/%2E%2E/%2e%2e/secret.mp4",
        "%252e%252e/secret.mp4",
        "%2fetc/passwd",
        "uploads/movie.mp4\x00.txt",
        "file:///etc/passwd",
        "file://localhost/etc/passwd",
        "uploads/",
        ".",
    ],
)
@pytest.mark.parametrize("pipeline", [INTERNAL, REMOTE], ids=["internal", "remote"])
def test_input_names_cannot_leave_the_folder(pipeline: Pipeline, input_name: str) -> None:
    with pytest.raises(InvalidInput):
        resolve_input(pipeline, input_name)


def test_input_names_resolve_inside_the_folder() -> None:
    internal = resolve_input(INTERNAL, "uploads/./abc/movie.mp4")
    assert (internal.storage, internal.key) == ("intern", "pipelines/6bf3456ed18f734ab4c01f25/uploads/abc/movie.mp4")
    remote = resolve_input(REMOTE, "uploads/movie.mp4")
    assert (remote.storage, remote.uri) == ("extern", "https://cdn.example.com/in/uploads/movie.mp4")
    absolute = resolve_input(INTERNAL, "https://media.example.com/ED_HD.avi")
    assert (absolute.storage, absolute.uri) == ("extern", "https://media.example.com/ED_HD.avi")


@pytest.mark.parametrize("input_name", ["../other/movie.mp4", "/etc/passwd", "uploads/%2e%2e/%2e%2e/x.mp4", "file:///etc/passwd"])
def test_jobs_and_backtraces_refuse_inputs_outside_the_folder(client: TestClient, account: Account, input_name: str) -> None:
    body = {"job": {"pipeline": {"id": account.pipeline_id}, "input": {"input_name": input_name},
                    "outputs": [{"preset": {"id": "525ce63284aed52635e85e02"}}]}}  # fmt: skip
    assert_error(client.post("/v1/jobs/", json=body, headers=account.headers), 400, "0x0050001")
    job = submit_job(client, account, autograph={"watermark_strength": "light"})
    leak = {"backtrace": {"pipeline": {"id": account.pipeline_id}, "input": {"input_name": input_name}}}
    response = client.post(f"/v1/backtraces/?job_id={job['id']}", json=leak, headers=account.headers)
    assert_error(response, 400, "0x0300001")
    assert client.get("/v1/jobs/", headers=account.headers).json()["total"] == 1


def test_job_inputs_are_stored_inside_the_pipeline_folder(client: TestClient, account: Account, db: Any) -> None:
    from leaktrace.store.models import File

    job = submit_job(client, account, input={"input_name": "uploads/abc/movie.mp4"})
    with db.read() as session:
        stored = session.get(File, job["input"]["file"]["id"])
    assert (stored.storage, stored.storage_key) == ("intern", f"pipelines/{account.pipeline_id}/uploads/abc/movie.mp4")


def test_values_the_database_refuses_are_400_not_500(client: TestClient, account: Account) -> None:
    # PostgreSQL cannot store NUL characters; wherever a route does not refuse them itself, the
    # database's refusal is reported as invalid input (SQLite stores them).
    body = {"job": {"pipeline": {"id": account.pipeline_id}, "input": {"input_name": "a.mp4"}, "user_data": "x\u0000y",
                    "outputs": [{"preset": {"id": "525ce63284aed52635e85e02"}}]}}  # fmt: skip
    response = client.post("/v1/jobs/", json=body, headers=account.headers)
    assert response.status_code in (201, 400), response.text
    if response.status_code == 400:
        assert response.json()["error"]["error_code"] == "0x0050001"


def test_a_location_sent_back_as_shown_keeps_its_password(client: TestClient, account: Account, db: Any) -> None:
    from leaktrace.store.models import Pipeline

    pipeline = create(client, account, **FULL)
    shown = client.get(f"/v1/pipelines/{pipeline['id']}", headers=account.headers).json()["pipeline"]
    assert "secret" not in str(shown) and ":pw@" not in str(shown)
    body = {"pipeline": {"input_download_dir": shown["input_download_dir"], "name": "renamed"}}
    response = client.put(f"/v1/pipelines/{pipeline['id']}", json=body, headers=account.headers)
    assert response.status_code == 200, response.text
    with db.read() as session:
        assert session.get(Pipeline, pipeline["id"]).input_download_dir == "s3://key:secret@eu-west-1/masters/"
    changed = {"pipeline": {"input_download_dir": "s3://key:new-secret@eu-west-1/masters/"}}
    client.put(f"/v1/pipelines/{pipeline['id']}", json=changed, headers=account.headers)
    with db.read() as session:
        assert session.get(Pipeline, pipeline["id"]).input_download_dir == "s3://key:new-secret@eu-west-1/masters/"
