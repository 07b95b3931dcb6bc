"""`/v1/files/uploads/`: a real clip in chunks through the form, completion, authorisation, limits,
interrupted chunks, traversal and the sweep of abandoned uploads."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn
from fastapi.testclient import TestClient

from leaktrace.api.app import create_app
from leaktrace.config import Settings
from leaktrace.flows.uploads import parts_prefix
from leaktrace.storage import Storage
from leaktrace.store.db import Database
from leaktrace.store.models import Upload
from tests.api.helpers import Account, xml_to_data

CLIP = Path("/work/shared/testdata/tears_of_steel_360p24_10s.mp4")
BASE = "https://api.xvid.com"
INVALID, NOT_FOUND = "0x0230001", "0x0230002"
FORBIDDEN, TOO_LARGE = "0x0000003", "0x0000007"
WEEK_MS = 7 * 24 * 3600 * 1000


@pytest.fixture
def storage(client: TestClient) -> Storage:
    return client.app.state.storage  # type: ignore[attr-defined,no-any-return]


def assert_error(response: Any, status: int, code: str, message: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["error_code"] == code
    if message is not None:
        assert message in error["error_message"], error["error_message"]


def start(client: TestClient, account: Account, object_key: str = "uploads/movie.mp4", **query: str) -> dict[str, Any]:
    params = {"object_key": object_key, "pipeline_id": account.pipeline_id, **query}
    response = client.post("/v1/files/uploads/", params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()["upload"]  # type: ignore[no-any-return]


def send_chunk(client: TestClient, upload: dict[str, Any], data: bytes, *, chunk: int = 0, chunks: int = 1,
               **fields: str) -> Any:
    """POST one chunk through the form exactly as a browser would: the params, then the file."""
    form = {**upload["form_post_params"], "chunk": str(chunk), "chunks": str(chunks), **fields}
    path = urlsplit(upload["form_post_url"]).path
    return client.post(path, data=form, files={"file": ("blob", data, "application/octet-stream")})


def finish(client: TestClient, account: Account, upload_id: str, nb_chunks: int) -> dict[str, Any]:
    """PUT the completion, then run the queued assembly as the worker would."""
    response = client.put(f"/v1/files/uploads/{upload_id}", json={"upload": {"nb_chunks": nb_chunks}}, headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.json()["upload"]["status"] == "COMPLETING"
    client.app.state.queue.complete_upload.call_local(upload_id)  # type: ignore[attr-defined]
    return client.get(f"/v1/files/uploads/{upload_id}", headers=account.headers).json()["upload"]  # type: ignore[no-any-return]


def parts(storage: Storage, upload_id: str) -> list[str]:
    return list(storage.keys(parts_prefix(upload_id)))


def test_a_clip_in_three_chunks(client: TestClient, storage: Storage, account: Account) -> None:
    upload = start(client, account)
    upload_id, key = upload["id"], f"pipelines/{account.pipeline_id}/uploads/movie.mp4"
    params = upload["form_post_params"]
    assert upload == {
        "form_post_params": {
            "name": "movie.mp4", "key": key, "success_action_status": "201", "filename": "", "chunk": "0", "chunks": "1",
            "policy": params["policy"], "signature": params["signature"],
        },
        "form_post_url": f"{BASE}/v1/files/uploads/{upload_id}/form",
        "status": "UPLOADING",
        "nb_chunks": 0,
        "storage_type": "intern",
        "object_key": "uploads/movie.mp4",
        "pipeline": {"id": account.pipeline_id, "href": f"{BASE}/v1/pipelines/{account.pipeline_id}"},
        "file": {"id": upload_id, "href": f"{BASE}/v1/files/{upload_id}"},
        "expires_at": upload["expires_at"],
        "version": 1,
        "user": {"id": account.user_id, "href": f"{BASE}/v1/users/{account.user_id}"},
        "created_at": upload["created_at"],
        "updated_at": upload["updated_at"],
        "id": upload_id,
        "href": f"{BASE}/v1/files/uploads/{upload_id}",
    }  # fmt: skip
    assert abs(upload["expires_at"] - (upload["created_at"] + WEEK_MS)) < 5000
    source = CLIP.read_bytes()
    third = len(source) // 3 + 1
    pieces = [source[i : i + third] for i in range(0, len(source), third)]
    assert len(pieces) == 3
    for chunk in (2, 0, 1):  # any order: the index decides the place
        response = send_chunk(client, upload, pieces[chunk], chunk=chunk, chunks=3)
        assert response.status_code == 201, response.text
        assert response.json()["upload"]["status"] == "UPLOADING"
    assert not storage.exists(key)  # nothing at the final key before completion
    done = finish(client, account, upload_id, 3)
    assert {k: done.get(k) for k in ("status", "nb_chunks", "form_post_params", "form_post_url")} == {
        "status": "COMPLETED", "nb_chunks": 3, "form_post_params": None, "form_post_url": None,
    }  # fmt: skip
    assert done["finished_at"] >= done["created_at"]
    stored = b"".join(storage.read_range(key))
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(source).hexdigest()
    assert parts(storage, upload_id) == []
    file = client.get(f"/v1/files/{upload_id}", headers=account.headers).json()["file"]
    assert (file["name"], file["size"], file["md5_checksum"]) == ("movie.mp4", len(source), hashlib.md5(source).hexdigest())
    assert file["finished_at"] == done["finished_at"]
    xml = client.get(f"/v1/files/intern/uploads/{upload_id}?format=xml&show_null=true", headers=account.headers)
    assert xml.headers["content-type"].startswith("application/xml")
    as_data = xml_to_data(xml.content)["upload"]
    assert (as_data["status"], as_data["nb_chunks"], as_data["form_post_params"]) == ("COMPLETED", "3", None)


def test_one_part_upload_and_alias_path(client: TestClient, storage: Storage, account: Account) -> None:
    response = client.post(
        "/v1/files/intern/uploads/", params={"object_key": "a/b/one.bin", "pipeline_id": account.pipeline_id},
        headers=account.headers,
    )  # fmt: skip
    upload = response.json()["upload"]
    data = bytes(range(256)) * 700  # bigger than the app's 64 KiB body cap, which the form ignores
    assert send_chunk(client, upload, data).status_code == 201
    done = finish(client, account, upload["id"], 1)
    assert done["status"] == "COMPLETED"
    assert b"".join(storage.read_range(f"pipelines/{account.pipeline_id}/a/b/one.bin")) == data
    # The cap still applies everywhere else.
    big = client.post("/v1/jobs/", content=b"x" * (65 * 1024), headers=account.headers)
    assert_error(big, 413, TOO_LARGE)


def _policy(document: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(document, separators=(",", ":"), sort_keys=True).encode()).decode().rstrip("=")


def test_the_form_authorises_one_upload_only(
    client: TestClient, settings: Settings, storage: Storage, account: Account, other_account: Account
) -> None:
    mine, theirs = start(client, account, "uploads/mine.mp4"), start(client, other_account, "uploads/theirs.mp4")
    params = mine["form_post_params"]
    flipped = params["signature"][:-1] + ("0" if params["signature"][-1] != "0" else "1")
    assert_error(send_chunk(client, mine, b"x", signature=flipped), 403, FORBIDDEN, "signature does not match")
    assert_error(send_chunk(client, mine, b"x", signature="zz"), 403, FORBIDDEN, "signature does not match")
    document = json.loads(base64.urlsafe_b64decode(params["policy"] + "=="))
    assert set(document) == {"upload_id", "key", "expires_at"}
    forged = _policy({**document, "expires_at": None})
    assert_error(send_chunk(client, mine, b"x", policy=forged), 403, FORBIDDEN, "signature does not match")
    # Their (valid) parameters sent to my upload, and mine to theirs.
    path = urlsplit(mine["form_post_url"]).path
    response = client.post(path, data=theirs["form_post_params"], files={"file": ("f", b"x")})
    assert_error(response, 403, FORBIDDEN, "belong to another upload")
    # A correctly signed policy whose time is up.
    key = settings.signing_key("upload-form")
    expired = _policy({**document, "expires_at": int(time.time()) - 10})
    signature = hmac.new(key, expired.encode(), hashlib.sha256).hexdigest()
    assert_error(send_chunk(client, mine, b"x", policy=expired, signature=signature), 403, FORBIDDEN, "expired")
    # The key field must be the signed one.
    assert_error(send_chunk(client, mine, b"x", key="pipelines/x/evil.mp4"), 403, FORBIDDEN, "key does not match")
    # Without the signed fields, or with the file before them.
    bare = client.post(path, files={"file": ("f", b"x")})
    assert_error(bare, 403, FORBIDDEN, "policy and signature are required")
    assert_error(client.post(path, content=b"x", headers={"content-type": "application/octet-stream"}), 400, INVALID)
    assert parts(storage, mine["id"]) == [] and parts(storage, theirs["id"]) == []
    # The API side of another account's upload is 404, never 403.
    for method in ("GET", "PUT"):
        response = client.request(method, f"/v1/files/uploads/{theirs['id']}", json={"upload": {"nb_chunks": 1}},
                                  headers=account.headers)  # fmt: skip
        assert_error(response, 404, NOT_FOUND, "Upload does not exist")
    assert_error(client.get(f"/v1/files/uploads/{'0' * 24}", headers=account.headers), 404, NOT_FOUND)
    assert_error(client.get(f"/v1/files/uploads/{mine['id']}"), 401, "0x0000002")


def test_size_limit(client: TestClient, settings: Settings, storage: Storage, account: Account,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "max_upload_bytes", 100_000)
    upload = start(client, account, "uploads/big.bin")
    assert_error(send_chunk(client, upload, b"x" * 100_001), 413, TOO_LARGE, "at most 100000 bytes")
    assert parts(storage, upload["id"]) == []
    # Chunk by chunk, the total counts.
    assert send_chunk(client, upload, b"x" * 60_000, chunk=0, chunks=2).status_code == 201
    assert_error(send_chunk(client, upload, b"y" * 60_000, chunk=1, chunks=2), 413, TOO_LARGE)
    assert parts(storage, upload["id"]) == [f"{parts_prefix(upload['id'])}/000000"]
    assert send_chunk(client, upload, b"y" * 40_000, chunk=1, chunks=2).status_code == 201
    # A body that declares more than the limit is refused before it is read.
    path = urlsplit(upload["form_post_url"]).path
    declared = client.post(path, content=b"--b--\r\n", headers={"content-type": "multipart/form-data; boundary=b",
                                                                  "content-length": str(10**9)})  # fmt: skip
    assert_error(declared, 413, TOO_LARGE)
    assert finish(client, account, upload["id"], 2)["status"] == "COMPLETED"


def _multipart(upload: dict[str, Any], data: bytes, boundary: str = "leaktrace-test") -> bytes:
    fields = {**upload["form_post_params"], "chunk": "0", "chunks": "1"}
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode() for name, value in fields.items()
    )
    body += f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'.encode() + data
    return body + f"\r\n--{boundary}--\r\n".encode()


def test_a_body_that_ends_early_leaves_no_part(client: TestClient, storage: Storage, account: Account) -> None:
    upload = start(client, account, "uploads/cut.bin")
    whole = _multipart(upload, b"z" * 50_000)
    path = urlsplit(upload["form_post_url"]).path
    headers = {"content-type": "multipart/form-data; boundary=leaktrace-test"}
    cut = client.post(path, content=whole[: len(whole) - 30_000], headers=headers)
    assert_error(cut, 400, INVALID, "ended before the form's closing boundary")
    assert parts(storage, upload["id"]) == []
    assert list((storage.root / ".incoming").iterdir()) == []  # type: ignore[attr-defined]
    assert client.post(path, content=whole, headers=headers).status_code == 201
    assert len(parts(storage, upload["id"])) == 1


def _within(seconds: float, condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def live_server(settings: Settings, client: TestClient) -> Iterator[int]:
    """The same service on a real loopback socket (uvicorn in a thread), for a client that drops."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def test_a_client_that_drops_mid_chunk_leaves_no_part(
    client: TestClient, storage: Storage, account: Account, live_server: int
) -> None:
    upload = start(client, account, "uploads/dropped.bin")
    whole = _multipart(upload, b"d" * 400_000)
    path = urlsplit(upload["form_post_url"]).path
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=leaktrace-test\r\n"
            f"Content-Length: {len(whole)}\r\n\r\n").encode()  # fmt: skip
    incoming = storage.root / ".incoming"  # type: ignore[attr-defined]

    def writing() -> bool:
        return any(path.stat().st_size > 0 for path in incoming.iterdir())

    with socket.create_connection(("127.0.0.1", live_server), timeout=10) as connection:
        connection.sendall(head + whole[: len(whole) // 2])
        assert _within(10, writing)  # the server is streaming the file part into storage
    assert _within(10, lambda: not list(incoming.iterdir()))  # dropped: the temporary part is gone
    assert parts(storage, upload["id"]) == []
    assert client.get(f"/v1/files/uploads/{upload['id']}", headers=account.headers).json()["upload"]["status"] == "UPLOADING"


def test_completion_rules(client: TestClient, storage: Storage, account: Account) -> None:
    upload = start(client, account, "uploads/rules.bin")
    url = f"/v1/files/uploads/{upload['id']}"
    assert send_chunk(client, upload, b"a", chunk=0, chunks=3).status_code == 201
    assert send_chunk(client, upload, b"c", chunk=2, chunks=3).status_code == 201
    missing = client.put(url, json={"upload": {"nb_chunks": 3}}, headers=account.headers)
    assert_error(missing, 400, INVALID, "1 of 3 chunks are missing (chunk 1)")
    assert_error(client.put(url, json={"upload": {"nb_chunks": 2}}, headers=account.headers), 400, INVALID, "missing")
    assert_error(client.put(url, json={"upload": {"nb_chunks": 0}}, headers=account.headers), 400, INVALID)
    assert_error(client.put(url, json={"upload": {}}, headers=account.headers), 400, INVALID)
    assert_error(send_chunk(client, upload, b"b", chunk=3, chunks=3), 400, INVALID, "chunk must be between 0 and")
    assert send_chunk(client, upload, b"b", chunk=1, chunks=3).status_code == 201
    assert send_chunk(client, upload, b"d", chunk=3, chunks=4).status_code == 201
    assert_error(client.put(url, json={"upload": {"nb_chunks": 3}}, headers=account.headers), 400, INVALID, "beyond")
    first = client.put(url, json={"upload": {"nb_chunks": 4}}, headers=account.headers).json()["upload"]
    assert (first["status"], first["nb_chunks"]) == ("COMPLETING", 4)
    again = client.put(url, json={"upload": {"nb_chunks": 4}}, headers=account.headers).json()["upload"]
    assert again["status"] == "COMPLETING"  # a repeated PUT is answered, not queued twice
    assert_error(client.put(url, json={"upload": {"nb_chunks": 5}}, headers=account.headers), 400, INVALID)
    assert_error(send_chunk(client, upload, b"e", chunk=0, chunks=4), 400, INVALID, "COMPLETING")
    client.app.state.queue.complete_upload.call_local(upload["id"])  # type: ignore[attr-defined]
    assert b"".join(storage.read_range(f"pipelines/{account.pipeline_id}/uploads/rules.bin")) == b"abcd"
    assert_error(client.post("/v1/files/uploads/", params={"object_key": "uploads/rules.bin", "pipeline_id": account.pipeline_id},
                             headers=account.headers), 400, INVALID, "already taken")  # fmt: skip


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"object_key": "../escape.mp4"}, "must not leave"),
        ({"object_key": "uploads/../../escape.mp4"}, "must not leave"),
        ({"object_key": "%2e%2e/escape.mp4"}, "must not leave"),
        ({"object_key": "/etc/passwd"}, "relative"),
        ({"object_key": "a\\b.mp4"}, "separator"),
        ({"object_key": "a\x01b.mp4"}, "control"),
        ({"object_key": "a\x7fb.mp4"}, "control"),
        ({"object_key": "uploads/"}, "must name a file"),
        ({"object_key": ""}, "object_key is required"),
        ({"pipeline_id": ""}, "pipeline_id is required"),
        ({"pipeline_id": "525ce63284aed52635e85d05"}, "does not exist"),
        ({"expires_at": "1000"}, "expires_at must be in the future"),
        ({"expires_at": "soon"}, "expires_at must be an integer"),
        ({"expires_at": str(2**63)}, "expires_at must be at most"),
        ({"ip": "4294967296"}, "ip must be at most"),
    ],
)
def test_bad_creation_parameters(client: TestClient, account: Account, query: dict[str, str], message: str) -> None:
    params = {"object_key": "uploads/ok.mp4", "pipeline_id": account.pipeline_id, **query}
    assert_error(client.post("/v1/files/uploads/", params=params, headers=account.headers), 400, INVALID, message)


def test_another_accounts_pipeline_is_refused(client: TestClient, account: Account, other_account: Account) -> None:
    params = {"object_key": "uploads/x.mp4", "pipeline_id": other_account.pipeline_id}
    assert_error(client.post("/v1/files/uploads/", params=params, headers=account.headers), 400, INVALID, "does not exist")


def test_abandoned_uploads_are_swept(client: TestClient, db: Database, storage: Storage, account: Account) -> None:
    abandoned = start(client, account, "uploads/abandoned.bin")
    kept = start(client, account, "uploads/kept.bin", expires_at="0")
    assert "expires_at" not in kept
    done = start(client, account, "uploads/done.bin")
    for upload in (abandoned, kept, done):
        assert send_chunk(client, upload, b"half", chunk=0, chunks=2).status_code == 201
    assert send_chunk(client, done, b"!", chunk=1, chunks=2).status_code == 201
    assert finish(client, account, done["id"], 2)["status"] == "COMPLETED"
    with db.write() as session:
        for upload_id in (abandoned["id"], done["id"]):
            session.get(Upload, upload_id).expires_at = 1_000  # type: ignore[union-attr]
    start(client, account, "uploads/next.bin")  # creating an upload sweeps
    assert_error(client.get(f"/v1/files/uploads/{abandoned['id']}", headers=account.headers), 404, NOT_FOUND)
    assert_error(client.get(f"/v1/files/{abandoned['id']}", headers=account.headers), 404, NOT_FOUND)
    assert parts(storage, abandoned["id"]) == []
    assert client.get(f"/v1/files/uploads/{kept['id']}", headers=account.headers).json()["upload"]["status"] == "UPLOADING"
    assert len(parts(storage, kept["id"])) == 1
    assert client.get(f"/v1/files/uploads/{done['id']}", headers=account.headers).json()["upload"]["status"] == "COMPLETED"
    assert storage.exists(f"pipelines/{account.pipeline_id}/uploads/done.bin")


def test_deleting_the_file_removes_an_upload_in_progress(client: TestClient, storage: Storage, account: Account) -> None:
    upload = start(client, account, "uploads/deleted.bin")
    assert send_chunk(client, upload, b"part", chunk=0, chunks=2).status_code == 201
    assert client.delete(f"/v1/files/{upload['id']}", headers=account.headers).status_code == 200
    assert parts(storage, upload["id"]) == []
    assert_error(client.get(f"/v1/files/uploads/{upload['id']}", headers=account.headers), 404, NOT_FOUND)
    assert_error(send_chunk(client, upload, b"late", chunk=1, chunks=2), 404, NOT_FOUND)
    assert parts(storage, upload["id"]) == []


def test_an_assembly_that_fails_says_why(client: TestClient, storage: Storage, account: Account) -> None:
    upload = start(client, account, "uploads/vanishing.bin")
    for chunk in (0, 1):
        assert send_chunk(client, upload, b"part", chunk=chunk, chunks=2).status_code == 201
    url = f"/v1/files/uploads/{upload['id']}"
    assert client.put(url, json={"upload": {"nb_chunks": 2}}, headers=account.headers).status_code == 200
    storage.delete(f"{parts_prefix(upload['id'])}/000001")  # lost before the worker got to it
    client.app.state.queue.complete_upload.call_local(upload["id"])  # type: ignore[attr-defined]
    failed = client.get(url, headers=account.headers).json()["upload"]
    assert (failed["status"], failed["error_msg"]) == ("FAILURE", "assembly failed: a chunk disappeared")
    assert not storage.exists(f"pipelines/{account.pipeline_id}/uploads/vanishing.bin")
    assert parts(storage, upload["id"]) == []
    assert_error(client.put(url, json={"upload": {"nb_chunks": 2}}, headers=account.headers), 400, INVALID, "failed")
    # The key is free again for a new upload.
    assert start(client, account, "uploads/vanishing.bin")["status"] == "UPLOADING"
