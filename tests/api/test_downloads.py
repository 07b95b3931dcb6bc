"""Downloads through HTTP: signed links and bearer tokens, delivery URLs, byte ranges, tag copies,
and the access records every delivery leaves.

Links are built in this file with the algorithm of Xvid's published `create_autograph.py`
(reference §4.1), not with our own signer. The AutoGraph title is a real prepared title (6 s of a
real clip at 144 lines, 1 s positions) stored the way import jobs store it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from leaktrace.autograph.assemble import write_copy
from leaktrace.config import Settings
from leaktrace.delivery import signing
from leaktrace.ids import new_id
from leaktrace.store import access
from leaktrace.store.db import Database
from leaktrace.store.models import AccessRecord, Application, File
from tests.api.conftest import PUBLIC_URL
from tests.api.helpers import Account, new_account

TESTDATA = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"
TITLE_CLIP = "tears_of_steel_360p24_10s.mp4"
TITLE_SECONDS = 6.0
TITLE_HEIGHT = 144
TITLE_KEY = bytes(range(32, 64))
MIB = 1024 * 1024
CLIENT_RANGE_BYTES = 4 * MIB  # what MediaHub clients read per request
PLAIN_SIZE = 300_007

# Reference §4.4.
VECTOR_SECRET = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v"
VECTOR_CLIENT_ID = "cb379184054d2011389f5a38"
VECTOR_FILE_ID = "6bf3456ed18f734ab4c01f25"
VECTOR_TARGET = (
    "/v1/files/downloads/?file_id=6bf3456ed18f734ab4c01f25&autograph_tag=viewer-42&redirect=true"
    "&multi_use=true&client_id=cb379184054d2011389f5a38&expiry_time=1700000000"
    "&signature=e2786117e2fa7d11461382a5b00f88001e280c78e32b1b666d540a9ce8cdb8c7"
)


def create_autograph_link(file_id: str, tag: str, client_id: str, client_secret: str, validity_s: int, *,
                          multi_use: str = "true", extra: str = "", path: str = "/v1/files/downloads/") -> str:
    """The official script's algorithm (reference §4.1), written out here; `extra` goes before client_id."""
    url = path + "?file_id=" + file_id + "&autograph_tag=" + tag
    url += "&redirect=true&multi_use=" + multi_use + extra
    expires = int(time.time()) + validity_s
    url += "&client_id=" + client_id + "&expiry_time=" + str(expires)
    key = base64.b64decode(client_secret)
    return url + "&signature=" + hmac.new(key, url.encode("utf-8"), hashlib.sha256).hexdigest()


def local(url: str) -> str:
    """The path and query of an absolute URL the service handed out."""
    assert url.startswith(PUBLIC_URL + "/v1/"), url
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def error_of(response: object) -> tuple[int, str, str]:
    body = response.json()["error"]  # type: ignore[attr-defined]
    return response.status_code, body["error_code"], body["error_message"]  # type: ignore[attr-defined]


# ---- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def title_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real prepared title: 6 s of a real clip, 144 lines, 1 s positions, a fixed key."""
    from leaktrace.autograph.embed import prepare

    source = TESTDATA / TITLE_CLIP
    if not source.is_file():
        pytest.skip(f"test clip {source} is missing")
    outdir = tmp_path_factory.mktemp("title") / "title"
    prepare(source, outdir, strength="light", position_seconds=1.0, height=TITLE_HEIGHT, duration=TITLE_SECONDS,
            key=TITLE_KEY, workers=1)  # fmt: skip
    return outdir


def add_file(db: Database, account: Account, **columns: object) -> str:
    file_id = str(columns.pop("id", new_id()))
    with db.write() as session:
        session.add(File(id=file_id, user_id=account.user_id, application_id=account.application_id,
                         pipeline_id=account.pipeline_id, **columns))  # fmt: skip
    return file_id


def store_title(client: TestClient, account: Account, title_dir: Path, tmp_path: Path, *, file_id: str | None = None,
                **columns: object) -> str:
    """Store the title as an import job does (prefix titles/<id>/) and record its File (`columns` override)."""
    file_id = file_id or new_id()
    staging = tmp_path / f"staging-{file_id}"
    shutil.copytree(title_dir, staging)
    prefix = f"titles/{file_id}/"
    client.app.state.storage.put_tree(prefix, staging)  # type: ignore[attr-defined]
    fields: dict[str, object] = {"name": "movie.mp4", "subtype": "video", "mime_type": "video/mp4",
                                 "video_tracks": [{"width": 256, "height": TITLE_HEIGHT}], **columns}
    return add_file(client.app.state.db, account, id=file_id, storage_key=prefix, autograph=True, **fields)  # type: ignore[attr-defined]


@pytest.fixture
def tagged(client: TestClient, account: Account, title_dir: Path, tmp_path: Path) -> str:
    return store_title(client, account, title_dir, tmp_path)


PLAIN_BYTES = bytes((i * 7 + i // 251) % 256 for i in range(PLAIN_SIZE))


@pytest.fixture
def plain(client: TestClient, account: Account) -> str:
    """A plain stored output of PLAIN_SIZE known bytes at pipelines/<id>/outputs/plain.bin."""
    key = f"pipelines/{account.pipeline_id}/outputs/plain.bin"
    with client.app.state.storage.writer(key) as out:  # type: ignore[attr-defined]
        out.write(PLAIN_BYTES)
    return add_file(client.app.state.db, account, name="plain file é.bin", storage_key=key, autograph=False,  # type: ignore[attr-defined]
                    mime_type="application/octet-stream", size=PLAIN_SIZE)  # fmt: skip


def delivery_url(client: TestClient, account: Account, file_id: str, **params: str) -> str:
    response = client.get("/v1/files/downloads", params={"file_id": file_id, **params}, headers=account.headers)
    assert response.status_code == 200, response.text
    return local(response.json()["download"]["url"])


def copy_bytes(title_dir: Path, tag: str, tmp_path: Path) -> bytes:
    out = tmp_path / f"copy-{tag}.mp4"
    write_copy(title_dir, tag, out)
    return out.read_bytes()


def records(client: TestClient, file_id: str) -> list[AccessRecord]:
    client.app.state.access_recorder.flush()  # type: ignore[attr-defined]
    return access.records_of(client.app.state.db, file_id=file_id)  # type: ignore[attr-defined]


# ---- links: the reference's algorithm, the vector, refusals --------------------------------------


def test_a_link_made_by_the_reference_algorithm_redirects_to_the_tags_copy(
    client: TestClient, account: Account, tagged: str, title_dir: Path, tmp_path: Path
) -> None:
    link = create_autograph_link(tagged, "viewer-42", account.client_id, account.client_secret, 600)
    response = client.get(link, follow_redirects=False)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(PUBLIC_URL + "/v1/files/downloads/deliver/")
    got = client.get(local(location))
    assert got.status_code == 200
    assert got.content == copy_bytes(title_dir, "viewer-42", tmp_path)
    assert got.headers["content-type"] == "video/mp4"
    assert got.headers["content-disposition"] == "attachment; filename=\"movie.mp4\"; filename*=UTF-8''movie.mp4"


def test_the_reference_vector_verifies_through_http(
    client: TestClient, settings: Settings, title_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """§4.4's link, for its application and file: expired today, accepted an hour before its expiry."""
    owner = new_account(client, settings)
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    with db.write() as session:
        session.add(Application(user_id=owner.user_id, name="vector", client_id=VECTOR_CLIENT_ID, scopes="mediahub,autograph",
                                secret_encrypted=settings.fernet().encrypt(VECTOR_SECRET.encode()).decode()))  # fmt: skip
    store_title(client, owner, title_dir, tmp_path, file_id=VECTOR_FILE_ID)
    assert error_of(client.get(VECTOR_TARGET)) == (403, "0x0230003", "Invalid signed link: the link has expired")
    monkeypatch.setattr(signing.time, "time", lambda: 1_700_000_000 - 3600)
    response = client.get(VECTOR_TARGET, follow_redirects=False)
    assert response.status_code == 302, response.text
    assert client.get(local(response.headers["location"])).content == copy_bytes(title_dir, "viewer-42", tmp_path)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda link: link.replace("file_id=", "file_id=0"), "signature does not match"),
        (lambda link: link.replace("autograph_tag=viewer-42", "autograph_tag=viewer-43"), "signature does not match"),
        (lambda link: link.replace("redirect=true", "redirect=false"), "signature does not match"),
        (lambda link: link.replace("multi_use=true", "multi_use=false"), "signature does not match"),
        (lambda link: re.sub(r"expiry_time=(\d+)", lambda m: f"expiry_time={int(m[1]) + 1}", link), "signature does not match"),
        (lambda link: link.replace("client_id=", "client_id=x"), "unknown or disabled application"),
        (lambda link: link[:-1] + ("0" if link[-1] != "0" else "1"), "signature does not match"),
        (lambda link: link + "&streaming=true", "signature must be the last parameter: 64 hex digits"),
        (lambda link: link.replace("/v1/files/downloads/", "/v1/files/intern/downloads/"), "signature does not match"),
    ],
)  # fmt: skip
def test_tampering_with_any_part_of_a_link_is_refused(
    client: TestClient, account: Account, tagged: str, tamper: object, message: str
) -> None:
    link = create_autograph_link(tagged, "viewer-42", account.client_id, account.client_secret, 600)
    assert error_of(client.get(tamper(link))) == (403, "0x0230003", f"Invalid signed link: {message}")  # type: ignore[operator]


def test_expired_links_and_delivery_urls_are_refused(
    client: TestClient, account: Account, tagged: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = create_autograph_link(tagged, "v", account.client_id, account.client_secret, -(signing.CLOCK_SKEW_S + 5))
    assert error_of(client.get(link)) == (403, "0x0230003", "Invalid signed link: the link has expired")
    url = delivery_url(client, account, tagged, autograph_tag="v", expiry_time=str(int(time.time()) + 60))
    assert client.head(url).status_code == 200
    later = time.time() + 61
    monkeypatch.setattr(signing.time, "time", lambda: later)
    assert error_of(client.get(url)) == (403, "0x0230003", "Invalid download link: the delivery link has expired")


def test_a_tampered_delivery_url_is_refused(client: TestClient, account: Account, tagged: str) -> None:
    url = delivery_url(client, account, tagged, autograph_tag="v")
    payload, signature = url.rsplit("/", 1)[1].split(".")
    forged = base64.urlsafe_b64encode(
        base64.urlsafe_b64decode(payload + "==").replace(b'"tag":"v"', b'"tag":"w"')
    ).decode().rstrip("=")  # fmt: skip
    assert error_of(client.get(url.replace(payload, forged))) == (
        403, "0x0230003", "Invalid download link: the delivery link's signature does not match")  # fmt: skip


def test_a_single_use_link_works_once_even_when_raced(client: TestClient, account: Account, tagged: str) -> None:
    link = create_autograph_link(tagged, "once", account.client_id, account.client_secret, 600, multi_use="false")
    assert client.head(link, follow_redirects=False).status_code == 302  # looking does not use it up
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def use() -> None:
        barrier.wait()
        statuses.append(client.get(link, follow_redirects=False).status_code)

    threads = [threading.Thread(target=use) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [302, 403]
    assert error_of(client.get(link)) == (403, "0x0230004", "This single-use link has already been used")


def test_the_location_of_a_head_on_a_single_use_link_answers_head_only(client: TestClient, account: Account, tagged: str) -> None:
    link = create_autograph_link(tagged, "look", account.client_id, account.client_secret, 600, multi_use="false")
    location = local(client.head(link, follow_redirects=False).headers["location"])
    assert client.head(location).status_code == 200
    assert error_of(client.get(location))[:2] == (403, "0x0230003")


def test_another_accounts_credentials_do_not_reach_a_file(
    client: TestClient, account: Account, other_account: Account, tagged: str
) -> None:
    link = create_autograph_link(tagged, "v", other_account.client_id, other_account.client_secret, 600)
    assert error_of(client.get(link)) == (404, "0x0230002", "Requested file does not exist")
    response = client.get("/v1/files/downloads", params={"file_id": tagged, "autograph_tag": "v"}, headers=other_account.headers)
    assert error_of(response) == (404, "0x0230002", "Requested file does not exist")


def test_without_credentials_or_scope(client: TestClient, settings: Settings, tagged: str) -> None:
    assert error_of(client.get("/v1/files/downloads", params={"file_id": tagged}))[:2] == (401, "0x0000002")
    narrow = new_account(client, settings, scopes=["me"])
    response = client.get("/v1/files/downloads", params={"file_id": tagged, "autograph_tag": "v"}, headers=narrow.headers)
    assert error_of(response)[:2] == (403, "0x0000004")


def test_download_scope_alone_is_enough(client: TestClient, settings: Settings, plain: str, account: Account) -> None:
    scoped = new_account(client, settings, scopes=["mediahub_download_files"])
    key = f"pipelines/{scoped.pipeline_id}/outputs/x.bin"
    with client.app.state.storage.writer(key) as out:  # type: ignore[attr-defined]
        out.write(b"abc")
    file_id = add_file(client.app.state.db, scoped, name="x.bin", storage_key=key)  # type: ignore[attr-defined]
    assert client.get(delivery_url(client, scoped, file_id)).content == b"abc"


def test_an_autograph_file_needs_a_tag_and_a_plain_file_takes_none(
    client: TestClient, account: Account, tagged: str, plain: str
) -> None:
    no_tag = client.get("/v1/files/downloads", params={"file_id": tagged}, headers=account.headers)
    assert error_of(no_tag) == (400, "0x0230001", "Invalid Input: autograph_tag is required: an AutoGraph file is only "
                                                  "delivered as a tag's copy")  # fmt: skip
    link = create_autograph_link(tagged, "", account.client_id, account.client_secret, 600)
    assert error_of(client.get(link))[:2] == (400, "0x0230001")
    tagged_plain = client.get("/v1/files/downloads", params={"file_id": plain, "autograph_tag": "v"}, headers=account.headers)
    assert error_of(tagged_plain)[:2] == (400, "0x0230001")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "name the file: file_id, or pipeline_id and object_key"),
        ({"file_id": "PLAIN", "redirect": "maybe"}, "redirect must be true or false"),
        ({"file_id": "PLAIN", "expiry_time": "180"}, "expiry_time must be at least 1000000000"),
        ({"file_id": "PLAIN", "expiry_time": "1000000000"}, "expiry_time has passed"),
        ({"file_id": "PLAIN", "max_parallel_downloads": "0"}, "max_parallel_downloads must be at least 1"),
        ({"file_id": "PLAIN", "ip": "4294967296"}, "ip must be an IPv4 address as a 32-bit integer, or an address in text"),
    ],
)
def test_bad_parameters(client: TestClient, account: Account, plain: str, params: dict[str, str], message: str) -> None:
    params = {name: plain if value == "PLAIN" else value for name, value in params.items()}
    response = client.get("/v1/files/downloads", params=params, headers=account.headers)
    assert error_of(response) == (400, "0x0230001", f"Invalid Input: {message}")


def test_json_answer_and_the_intern_alias(client: TestClient, account: Account, tagged: str) -> None:
    expiry = int(time.time()) + 300
    for path in ("/v1/files/downloads/", "/v1/files/intern/downloads/"):
        response = client.get(path, params={"file_id": tagged, "autograph_tag": "v", "expiry_time": str(expiry),
                                            "streaming": "true"}, headers=account.headers)  # fmt: skip
        assert response.status_code == 200, response.text
        body = response.json()["download"]
        assert set(body) == {"url", "file", "autograph_tag", "expiry_time", "streaming"}
        assert body["file"] == {"id": tagged} and body["autograph_tag"] == "v"
        assert body["expiry_time"] == expiry and body["streaming"] is True
        assert client.head(local(body["url"])).headers["content-disposition"].startswith("inline; ")


def test_pipeline_and_object_key_name_a_file(client: TestClient, account: Account, plain: str, tagged: str) -> None:
    response = client.get("/v1/files/downloads", params={"pipeline_id": account.pipeline_id, "object_key": "outputs/plain.bin"},
                          headers=account.headers)  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["download"]["file"] == {"id": plain}
    response = client.get("/v1/files/downloads", params={"pipeline_id": account.pipeline_id, "object_key": "movie.mp4",
                                                         "autograph_tag": "v"}, headers=account.headers)  # fmt: skip
    assert response.json()["download"]["file"] == {"id": tagged}


def test_ip_restriction(client: TestClient, account: Account, plain: str) -> None:
    # TestClient's address is "testclient"; an explicit one is set with client=(host, port).
    elsewhere = TestClient(client.app, client=("127.0.0.9", 50000))
    here = TestClient(client.app, client=("127.0.0.2", 50000))
    as_int = str(int.from_bytes(bytes([127, 0, 0, 2]), "big"))
    url = delivery_url(here, account, plain, ip=as_int)
    assert here.get(url).content == PLAIN_BYTES
    assert error_of(elsewhere.get(url)) == (403, "0x0230005", "This link is restricted to another client address")
    denied = elsewhere.get("/v1/files/downloads", params={"file_id": plain, "ip": "127.0.0.2"}, headers=account.headers)
    assert error_of(denied)[:2] == (403, "0x0230005")


def test_max_parallel_downloads(client: TestClient, account: Account, plain: str) -> None:
    url = delivery_url(client, account, plain, max_parallel_downloads="1")
    in_flight = client.app.state.in_flight  # type: ignore[attr-defined]
    assert in_flight.try_acquire(plain, None, limit=None)  # a delivery of this file is running
    try:
        assert error_of(client.get(url)) == (429, "0x0230006", "Too many parallel downloads: at most 1")
        assert client.head(url).status_code == 200  # HEAD transfers nothing and is not counted
    finally:
        in_flight.release(plain, None)
    assert client.get(url).content == PLAIN_BYTES
    assert in_flight.running(plain, None) == 0


# ---- the bytes: ranges, HEAD, copies -------------------------------------------------------------


def test_head_then_4_mib_ranges_give_the_tags_copy(
    client: TestClient, account: Account, tagged: str, title_dir: Path, tmp_path: Path
) -> None:
    expected = copy_bytes(title_dir, "alice", tmp_path)
    url = delivery_url(client, account, tagged, autograph_tag="alice")
    head = client.head(url)
    assert head.status_code == 200 and head.content == b""
    size = int(head.headers["content-length"])
    assert size == len(expected)
    assert head.headers["accept-ranges"] == "bytes"
    for step in (CLIENT_RANGE_BYTES, 7777):  # real clients' step, and one that cuts every piece
        got = bytearray()
        for start in range(0, size, step):
            part = client.get(url, headers={"Range": f"bytes={start}-{min(start + step, size) - 1}",
                                            "If-Range": head.headers["etag"]})  # fmt: skip
            assert part.status_code == 206
            assert part.headers["content-range"] == f"bytes {start}-{min(start + step, size) - 1}/{size}"
            assert part.headers["etag"] == head.headers["etag"]
            got += part.content
        assert bytes(got) == expected


def test_two_tags_get_different_copies_with_their_own_etags(
    client: TestClient, account: Account, tagged: str, title_dir: Path, tmp_path: Path
) -> None:
    first = client.get(delivery_url(client, account, tagged, autograph_tag="alice"))
    second = client.get(delivery_url(client, account, tagged, autograph_tag="bob"))
    assert first.content == copy_bytes(title_dir, "alice", tmp_path)
    assert second.content == copy_bytes(title_dir, "bob", tmp_path)
    assert first.content != second.content
    assert first.headers["etag"] != second.headers["etag"]
    again = client.get(delivery_url(client, account, tagged, autograph_tag="alice"))
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["last-modified"] == first.headers["last-modified"]


@pytest.fixture
def plain_url(client: TestClient, account: Account, plain: str) -> str:
    return delivery_url(client, account, plain)


@pytest.mark.parametrize(
    ("range_header", "content_range", "expected"),
    [
        ("bytes=0-0", f"bytes 0-0/{PLAIN_SIZE}", PLAIN_BYTES[:1]),
        ("bytes=-500", f"bytes {PLAIN_SIZE - 500}-{PLAIN_SIZE - 1}/{PLAIN_SIZE}", PLAIN_BYTES[-500:]),
        ("bytes=-999999999", f"bytes 0-{PLAIN_SIZE - 1}/{PLAIN_SIZE}", PLAIN_BYTES),
        ("bytes=300000-", f"bytes 300000-{PLAIN_SIZE - 1}/{PLAIN_SIZE}", PLAIN_BYTES[300000:]),
        ("bytes=100-199999999", f"bytes 100-{PLAIN_SIZE - 1}/{PLAIN_SIZE}", PLAIN_BYTES[100:]),
        ("bytes=10-19,15-29", f"bytes 10-29/{PLAIN_SIZE}", PLAIN_BYTES[10:30]),
    ],
)
def test_single_ranges(client: TestClient, plain_url: str, range_header: str, content_range: str, expected: bytes) -> None:
    response = client.get(plain_url, headers={"Range": range_header})
    assert response.status_code == 206
    assert response.headers["content-range"] == content_range
    assert response.headers["content-length"] == str(len(expected))
    assert response.content == expected


def test_multiple_ranges_are_multipart(client: TestClient, plain_url: str) -> None:
    response = client.get(plain_url, headers={"Range": "bytes=-3, 0-9,1000-1999"})
    assert response.status_code == 206
    media_type, _, boundary = response.headers["content-type"].partition("; boundary=")
    assert media_type == "multipart/byteranges"
    assert int(response.headers["content-length"]) == len(response.content)
    parts = [
        (f"bytes {PLAIN_SIZE - 3}-{PLAIN_SIZE - 1}/{PLAIN_SIZE}", PLAIN_BYTES[-3:]),
        (f"bytes 0-9/{PLAIN_SIZE}", PLAIN_BYTES[:10]),
        (f"bytes 1000-1999/{PLAIN_SIZE}", PLAIN_BYTES[1000:2000]),
    ]
    expected = b"".join(
        f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: {content_range}\r\n\r\n".encode() + data
        for content_range, data in parts
    ) + f"\r\n--{boundary}--\r\n".encode()  # fmt: skip
    assert response.content == expected


@pytest.mark.parametrize("range_header", [f"bytes={PLAIN_SIZE}-", f"bytes={PLAIN_SIZE + 5}-{PLAIN_SIZE + 9}", "bytes=-0"])
def test_unsatisfiable_ranges(client: TestClient, plain_url: str, range_header: str) -> None:
    response = client.get(plain_url, headers={"Range": range_header})
    assert error_of(response) == (416, "0x0230001", f"Range not satisfiable: the file has {PLAIN_SIZE} bytes")
    assert response.headers["content-range"] == f"bytes */{PLAIN_SIZE}"


@pytest.mark.parametrize("range_header", ["items=0-5", "bytes=5-1", "bytes=a-b", "bytes=" + ",".join(["0-1"] * 33)])
def test_unusable_range_headers_are_ignored(client: TestClient, plain_url: str, range_header: str) -> None:
    response = client.get(plain_url, headers={"Range": range_header})
    assert response.status_code == 200 and response.content == PLAIN_BYTES


def test_if_range(client: TestClient, plain_url: str) -> None:
    head = client.head(plain_url)
    assert head.headers["content-length"] == str(PLAIN_SIZE)
    assert head.headers["content-disposition"] == (
        "attachment; filename=\"plain file _.bin\"; filename*=UTF-8''" + quote("plain file é.bin", safe=""))
    fresh = client.get(plain_url, headers={"Range": "bytes=0-9", "If-Range": head.headers["etag"]})
    assert fresh.status_code == 206 and fresh.content == PLAIN_BYTES[:10]
    by_date = client.get(plain_url, headers={"Range": "bytes=0-9", "If-Range": head.headers["last-modified"]})
    assert by_date.status_code == 206
    for stale in ('"0123456789abcdef0123456789abcdef"', "W/" + head.headers["etag"], "Mon, 01 Jan 2001 00:00:00 GMT"):
        whole = client.get(plain_url, headers={"Range": "bytes=0-9", "If-Range": stale})
        assert whole.status_code == 200 and whole.content == PLAIN_BYTES


def test_head_has_the_headers_of_get(client: TestClient, plain_url: str) -> None:
    for headers in ({}, {"Range": "bytes=5-9"}):
        head, get = client.head(plain_url, headers=headers), client.get(plain_url, headers=headers)
        assert head.status_code == get.status_code and head.content == b""
        assert {k: v for k, v in head.headers.items() if k != "date"} == {k: v for k, v in get.headers.items() if k != "date"}


def test_missing_bytes_are_a_clear_404(client: TestClient, account: Account) -> None:
    file_id = add_file(client.app.state.db, account, name="gone.bin", storage_key=f"pipelines/{account.pipeline_id}/gone.bin")  # type: ignore[attr-defined]
    assert error_of(client.get(delivery_url(client, account, file_id))) == (
        404, "0x0230002", "The file's stored bytes are not available")  # fmt: skip


# ---- access records ------------------------------------------------------------------------------


def test_access_records_count_each_byte_once_per_client(client: TestClient, account: Account, tagged: str) -> None:
    """Two clients: one reads half and resumes to the end over overlapping ranges, one reads a tenth."""
    first = TestClient(client.app, client=("127.0.0.2", 50000))
    second = TestClient(client.app, client=("127.0.0.3", 50001))
    url = delivery_url(client, account, tagged, autograph_tag="carol")
    size = int(first.head(url).headers["content-length"])
    half, tenth = size // 2, size // 10
    agent = {"User-Agent": "player/1.0", "Accept-Language": "de-CH"}
    assert first.get(url, headers={**agent, "Range": f"bytes=0-{half - 1}"}).status_code == 206
    assert first.get(url, headers={**agent, "Range": f"bytes={half - 100}-"}).status_code == 206  # resumed, overlapping
    assert second.get(url, headers={"User-Agent": "curl/8", "Range": f"bytes=0-{tenth - 1}"}).status_code == 206
    assert second.get(url, headers={"User-Agent": "curl/8", "Range": f"bytes=0-{tenth - 1}"}).status_code == 206  # again
    rows = {row.ip_address: row for row in records(client, tagged)}
    assert set(rows) == {"127.0.0.2", "127.0.0.3"}
    one, two = rows["127.0.0.2"], rows["127.0.0.3"]
    assert (one.tag, one.user_agent, one.accept_language, one.user_id) == ("carol", "player/1.0", "de-CH", account.user_id)
    assert one.percentage_obtained == 100.0
    assert one.bytes_sent == size + 100
    assert one.sent_spans == [[0, size]]
    assert two.percentage_obtained == pytest.approx(100.0 * tenth / size)
    assert two.bytes_sent == 2 * tenth
    assert (one.highest_resolution, one.streaming_only, two.accept_language) == (TITLE_HEIGHT, False, None)
    assert one.first_accessed_at <= one.last_accessed_at
    assert one.application_id == account.application_id
    assert (one.ip_country, one.ip_type) == (None, "UNK")  # loopback has no country


def test_forwarded_addresses_only_from_trusted_proxies_and_their_country(
    client: TestClient, account: Account, plain: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "trusted_proxies", "127.0.0.5/32, 10.0.0.0/8")
    proxy = TestClient(client.app, client=("127.0.0.5", 50000))
    stranger = TestClient(client.app, client=("127.0.0.6", 50000))
    url = delivery_url(client, account, plain)
    # The client wrote the first entry itself; the trusted 10.1.2.3 proxy saw 8.8.8.8.
    chain = {"X-Forwarded-For": "1.2.3.4, 8.8.8.8, 10.1.2.3", "Range": "bytes=0-9"}
    assert proxy.get(url, headers=chain).status_code == 206
    assert stranger.get(url, headers=chain).status_code == 206  # not a proxy: its header is ignored
    rows = {row.ip_address: (row.ip_country, row.ip_type, row.bytes_sent) for row in records(client, plain)}
    assert rows == {"8.8.8.8": ("United States", "UNK", 10), "127.0.0.6": (None, "UNK", 10)}


def test_a_head_is_not_a_delivery_and_each_tag_has_its_own_record(client: TestClient, account: Account, tagged: str) -> None:
    for tag in ("dave", "erin"):
        url = delivery_url(client, account, tagged, autograph_tag=tag)
        client.head(url)
        client.get(url, headers={"Range": "bytes=0-99"})
    rows = records(client, tagged)
    assert sorted((row.tag, row.bytes_sent) for row in rows) == [("dave", 100), ("erin", 100)]


def test_the_recorder_writes_everything_queued_when_it_stops(client: TestClient, account: Account, plain: str) -> None:
    from leaktrace.flows.access import AccessRecorder

    db: Database = client.app.state.db  # type: ignore[attr-defined]
    recorder = AccessRecorder(db)
    recorder.start()
    for n in range(20):
        recorder.submit(access.Delivery(
            user_id=account.user_id, application_id=None, job_id=None, file_id=plain, tag=None, file_size=PLAIN_SIZE,
            spans=((n * 1000, n * 1000 + 1000),), at_ms=n, ip_address="192.0.2.1", user_agent=None, accept_language=None,
            highest_resolution=None,
        ))  # fmt: skip
    recorder.stop()
    with db.read() as session:
        row = session.scalars(select(AccessRecord).where(AccessRecord.file_id == plain)).one()
    assert (row.bytes_sent, row.sent_spans, row.first_accessed_at, row.last_accessed_at) == (20_000, [[0, 20_000]], 0, 19)
    assert row.percentage_obtained == pytest.approx(100.0 * 20_000 / PLAIN_SIZE)



ABORT_FILE_BYTES = 32 * MIB  # far more than loopback socket buffers hold, so the server must stop early
ABORT_AFTER_BYTES = 256 * 1024
RECORD_WAIT_S = 10.0


@pytest.fixture
def real_server(client: TestClient) -> Iterator[str]:
    """The session's app behind a real uvicorn on loopback (its lifespan already runs in `client`)."""
    import socket

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(client.app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + RECORD_WAIT_S
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=RECORD_WAIT_S)


def test_an_aborted_download_counts_only_what_was_sent(client: TestClient, account: Account, real_server: str) -> None:
    import socket

    key = f"pipelines/{account.pipeline_id}/outputs/big.bin"
    with client.app.state.storage.writer(key) as out:  # type: ignore[attr-defined]
        for _ in range(ABORT_FILE_BYTES // MIB):
            out.write(b"\x5a" * MIB)
    file_id = add_file(client.app.state.db, account, name="big.bin", storage_key=key)  # type: ignore[attr-defined]
    url = delivery_url(client, account, file_id)
    host, port = real_server.split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"GET {url} HTTP/1.1\r\nHost: {real_server}\r\nUser-Agent: quitter\r\n\r\n".encode())
        received = 0
        while received < ABORT_AFTER_BYTES:
            data = sock.recv(65536)
            assert data, "the server closed the connection early"
            received += len(data)
    deadline = time.monotonic() + RECORD_WAIT_S
    while not (rows := records(client, file_id)):
        assert time.monotonic() < deadline, "the aborted delivery was never recorded"
        time.sleep(0.1)
    (row,) = rows
    assert (row.ip_address, row.user_agent) == ("127.0.0.1", "quitter")
    assert ABORT_AFTER_BYTES // 2 < row.bytes_sent < ABORT_FILE_BYTES // 2
    assert row.percentage_obtained == pytest.approx(100.0 * row.bytes_sent / ABORT_FILE_BYTES)
    assert client.app.state.in_flight.running(file_id, None) == 0  # type: ignore[attr-defined]
