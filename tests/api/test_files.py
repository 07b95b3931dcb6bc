"""`/v1/files/`: read, list with filters, delete (record and stored bytes), tenant isolation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from leaktrace.config import Settings
from leaktrace.storage import Storage
from leaktrace.store.db import Database
from leaktrace.store.models import File
from tests.api.helpers import Account, finish_job, submit_job

INVALID = "0x0230001"
NOT_FOUND = "0x0230002"


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["error_code"] == code


def stored_file(db: Database, storage: Storage, account: Account, name: str, *, user_data: str | None = None,
                content: bytes = b"bytes") -> tuple[str, Path]:
    """A file record with bytes in the local blob store, as an upload or a job output leaves it."""
    key = f"pipelines/{account.pipeline_id}/uploads/{name}"
    with storage.writer(key) as handle:
        handle.write(content)
    with db.write() as session:
        file = File(user_id=account.user_id, pipeline_id=account.pipeline_id, name=name, storage_key=key,
                    size=len(content), mime_type="video/mp4", user_data=user_data)
        session.add(file)
    path = storage.local_path(key)
    assert path is not None
    return file.id, path  # fmt: skip


@pytest.fixture
def storage(client: TestClient) -> Storage:
    return client.app.state.storage  # type: ignore[attr-defined,no-any-return]


def test_get_one(client: TestClient, db: Database, storage: Storage, account: Account) -> None:
    file_id, _ = stored_file(db, storage, account, "movie.mp4", user_data="batch-7")
    file = client.get(f"/v1/files/{file_id}", headers=account.headers).json()["file"]
    assert file == {
        "storage": "intern",
        "name": "movie.mp4",
        "type": "file",
        "pipeline": {"id": account.pipeline_id, "href": f"https://api.xvid.com/v1/pipelines/{account.pipeline_id}"},
        "mime_type": "video/mp4",
        "size": 5,
        "user_data": "batch-7",
        "uri": f"https://api.xvid.com/v1/files/downloads/?file_id={file_id}",
        "version": 1,
        "user": {"id": account.user_id, "href": f"https://api.xvid.com/v1/users/{account.user_id}"},
        "created_at": file["created_at"],
        "updated_at": file["updated_at"],
        "id": file_id,
        "href": f"https://api.xvid.com/v1/files/{file_id}",
    }
    expanded = client.get(f"/v1/files/{file_id}?expand=pipeline", headers=account.headers).json()["file"]
    assert expanded["pipeline"]["name"] == "Default Pipeline"


def test_list_filters(client: TestClient, db: Database, storage: Storage, account: Account) -> None:
    job = submit_job(client, account)
    finish_job(db, job["id"], status="SUCCESS", percentage=100)
    upload_id, _ = stored_file(db, storage, account, "upload.mp4", user_data="batch-7")

    def ids(query: str) -> list[str]:
        response = client.get(f"/v1/files/?{query}", headers=account.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == len(body["files"])
        return [f["id"] for f in body["files"]]

    everything = ids("")
    assert len(everything) == 4  # the pipeline folder, the job's input and output, the upload
    job_files = ids(f"job.id={job['id']}")
    assert len(job_files) == 2 and upload_id not in job_files
    assert ids("user_data=batch-7") == [upload_id]
    assert ids("user_data=batch") == []
    folders = ids("type=folder")
    assert len(folders) == 1
    assert set(ids("type=file,archive")) == set(everything) - set(folders)
    assert set(ids(f"pipeline.id={account.pipeline_id}")) == set(everything)
    assert ids("pipeline.id=525ce63284aed52635e85d05") == []
    first = client.get("/v1/files/?sort=name&direction=-1&limit=1", headers=account.headers).json()
    assert (first["total"], [f["id"] for f in first["files"]]) == (4, [upload_id])


@pytest.mark.parametrize("query", ["type=video", "type=", "type=file,,zip", "limit=5001", "limit=0", "start=-1",
                                   "direction=up", "bin_data=maybe", "format=yaml", "user_data=a%00b",
                                   "job.id=%00", "pipeline.id=x%00"])  # fmt: skip
def test_bad_list_parameters_are_400(client: TestClient, account: Account, query: str) -> None:
    assert_error(client.get(f"/v1/files/?{query}", headers=account.headers), 400, INVALID)


def test_delete_removes_record_and_bytes(client: TestClient, db: Database, storage: Storage, account: Account) -> None:
    file_id, path = stored_file(db, storage, account, "gone.mp4")
    assert path.exists()
    response = client.delete(f"/v1/files/{file_id}", headers=account.headers)
    assert (response.status_code, response.json()) == (200, {"result": {"status": "SUCCESS"}})
    assert not path.exists()
    assert_error(client.get(f"/v1/files/{file_id}", headers=account.headers), 404, NOT_FOUND)
    assert_error(client.delete(f"/v1/files/{file_id}", headers=account.headers), 404, NOT_FOUND)


def test_delete_of_an_external_input_keeps_its_source(client: TestClient, account: Account) -> None:
    job = submit_job(client, account, input={"input_name": "https://media.example.com/ED_HD.avi"})
    [file] = client.get(f"/v1/files/?job.id={job['id']}", headers=account.headers).json()["files"]
    assert file["storage"] == "extern"
    assert client.delete(f"/v1/files/{file['id']}", headers=account.headers).status_code == 200


def test_a_storage_key_outside_the_store_is_never_deleted(
    client: TestClient, db: Database, settings: Settings, storage: Storage, account: Account
) -> None:
    outside = settings.data_dir / "keep.txt"
    outside.write_text("keep")
    file_id, _ = stored_file(db, storage, account, "x.mp4")
    with db.write() as session:
        session.get(File, file_id).storage_key = "../keep.txt"  # type: ignore[union-attr]
    assert_error(client.delete(f"/v1/files/{file_id}", headers=account.headers), 400, INVALID)
    assert outside.read_text() == "keep"
    assert client.get(f"/v1/files/{file_id}", headers=account.headers).status_code == 200


def test_a_pipeline_folder_is_not_deleted_alone(client: TestClient, account: Account) -> None:
    folder_id = client.get(f"/v1/pipelines/{account.pipeline_id}", headers=account.headers).json()["pipeline"]["file"]["id"]
    assert_error(client.delete(f"/v1/files/{folder_id}", headers=account.headers), 400, INVALID)


def test_other_accounts_files_are_404(
    client: TestClient, db: Database, storage: Storage, account: Account, other_account: Account
) -> None:
    theirs, path = stored_file(db, storage, other_account, "theirs.mp4")
    assert_error(client.get(f"/v1/files/{theirs}", headers=account.headers), 404, NOT_FOUND)
    assert_error(client.delete(f"/v1/files/{theirs}", headers=account.headers), 404, NOT_FOUND)
    assert path.exists()
    assert theirs not in [f["id"] for f in client.get("/v1/files/", headers=account.headers).json()["files"]]
    assert client.get(f"/v1/files/?pipeline.id={other_account.pipeline_id}", headers=account.headers).json()["total"] == 0


def test_unknown_ids_and_scopes(client: TestClient, account: Account) -> None:
    for file_id in ("0" * 24, "abc", "525ce63284aed52635e85d05"):
        assert_error(client.get(f"/v1/files/{file_id}", headers=account.headers), 404, NOT_FOUND)
        assert_error(client.delete(f"/v1/files/{file_id}", headers=account.headers), 404, NOT_FOUND)
    assert_error(client.get("/v1/files/"), 401, "0x0000002")
    assert_error(client.get("/v1/files/", headers={"Authorization": "Bearer nope"}), 403, "0x0000003")
