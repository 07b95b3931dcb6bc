"""Where a job's input comes from: a pipeline's HTTP or S3 folder, an allowed local folder, never an
internal address (also not through a redirect); credentials never shown; pings signed and sent."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from leaktrace.flows import failures
from tests.flows.conftest import TESTDATA, Service, make_service
from tests.media.servers import HTTPTestServer, redirect, send_bytes

PRESET_360P = "525ce63284aed52635e85e04"
CLIP = TESTDATA / "tears_of_steel_360p24_10s.mp4"
ALLOWED = "127.0.0.1/32"  # the test servers' address; 127.0.0.2 stands for an internal one
REFUSED_HOST = "127.0.0.2"
PING_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from make_service(tmp_path_factory, fetch_allow_networks=ALLOWED)


@pytest.fixture(scope="module")
def http() -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as server:
        server.routes["/media/tears.mp4"] = send_bytes(CLIP.read_bytes())
        yield server


def _pipeline(service: Service, **fields: object) -> str:
    body = {"pipeline": {"name": "sources", "description": "inputs from elsewhere", **fields}}
    response = service.client.post("/v1/pipelines/", json=body, headers=service.headers)
    assert response.status_code == 201, response.text
    return response.json()["pipeline"]["id"]


def _run(service: Service, input_name: str, **job: object) -> dict:
    submitted = service.submit({"input": {"input_name": input_name}, "outputs": [{"preset": {"id": PRESET_360P}}], **job})
    return service.wait(submitted["id"])


def test_a_relative_name_is_fetched_from_the_pipelines_http_folder(service: Service, http: HTTPTestServer) -> None:
    pipeline = _pipeline(service, input_download_dir=http.url("/media/"))
    job = _run(service, "tears.mp4", pipeline={"id": pipeline})
    assert job["status"] == "SUCCESS", job
    source = service.client.get(f"/v1/files/{job['input']['file']['id']}", headers=service.headers).json()["file"]
    assert source["md5_checksum"] == hashlib.md5(CLIP.read_bytes()).hexdigest()


def test_a_relative_name_is_fetched_from_an_s3_compatible_folder_and_its_keys_are_never_shown(service: Service) -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client("s3", region_name="eu-west-1", endpoint_url=endpoint, aws_access_key_id="AKIDJOBS",
                          aws_secret_access_key="job-secret-key")  # fmt: skip
        # moto keeps its buckets per process, not per server: a name no other test uses
        s3.create_bucket(Bucket="job-masters", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        s3.put_object(Bucket="job-masters", Key="in/tears.mp4", Body=CLIP.read_bytes())
        base = f"s3://AKIDJOBS:job-secret-key@eu-west-1/job-masters/in/?endpoint={endpoint}"
        pipeline = _pipeline(service, input_download_dir=base)
        job = _run(service, "tears.mp4", pipeline={"id": pipeline})
        assert job["status"] == "SUCCESS", job
        absolute = _run(service, f"s3://AKIDJOBS:job-secret-key@eu-west-1/job-masters/in/tears.mp4?endpoint={endpoint}")
        assert absolute["status"] == "SUCCESS", absolute
        shown = [service.client.get(path, headers=service.headers).text
                 for path in (f"/v1/pipelines/{pipeline}", f"/v1/jobs/{absolute['id']}", "/v1/jobs/")]  # fmt: skip
        assert all("job-secret-key" not in text for text in shown)
        missing = _run(service, "nothing.mp4", pipeline={"id": pipeline})
        assert (missing["status"], missing["error_code"]) == ("FAILURE", failures.INPUT_NOT_FOUND.code)
        assert "job-secret-key" not in missing["error_msg"]
    finally:
        server.stop()


def test_an_internal_address_is_refused_directly_and_through_a_redirect(service: Service, http: HTTPTestServer) -> None:
    direct = _run(service, http.url("/media/tears.mp4", host=REFUSED_HOST))
    assert (direct["status"], direct["error_code"]) == ("FAILURE", failures.REFUSED_ADDRESS.code), direct
    http.routes["/bounce.mp4"] = redirect(http.url("/media/tears.mp4", host=REFUSED_HOST))
    bounced = _run(service, http.url("/bounce.mp4"))
    assert (bounced["status"], bounced["error_code"]) == ("FAILURE", failures.REFUSED_ADDRESS.code), bounced
    assert not any(path == "/media/tears.mp4" and REFUSED_HOST in headers.get("Host", "")
                   for _method, path, headers, _body in http.requests)  # fmt: skip


def test_a_file_in_the_inbox_is_imported_and_one_outside_is_refused(service: Service) -> None:
    inbox = service.settings.data_dir / "inbox"
    inbox.mkdir(exist_ok=True)
    (inbox / "tears.mp4").write_bytes(CLIP.read_bytes())
    job = _run(service, (inbox / "tears.mp4").resolve().as_uri())
    assert job["status"] == "SUCCESS", job
    body = {"job": {"pipeline": {"id": service.account.pipeline_id}, "input": {"input_name": "file:///etc/passwd"},
                    "outputs": [{"preset": {"id": PRESET_360P}}]}}  # fmt: skip
    response = service.client.post("/v1/jobs/", json=body, headers=service.headers)
    assert response.status_code == 400, response.text


def test_the_default_policy_refuses_loopback(tmp_path_factory: pytest.TempPathFactory, http: HTTPTestServer) -> None:
    for guarded in make_service(tmp_path_factory):
        job = _run(guarded, http.url("/media/tears.mp4"))
        assert (job["status"], job["error_code"]) == ("FAILURE", failures.REFUSED_ADDRESS.code), job


def _received(http: HTTPTestServer, path: str, count: int) -> list[tuple[dict[str, str], bytes]]:
    deadline = time.monotonic() + PING_TIMEOUT_S
    while True:
        got = [(headers, body) for method, p, headers, body in http.requests if method == "POST" and p == path]
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_the_pipelines_ping_urls_receive_signed_started_and_finished(service: Service, http: HTTPTestServer) -> None:
    http.routes["/hooks/started"] = send_bytes(b"ok")
    http.routes["/hooks/finished"] = send_bytes(b"ok")
    pipeline = _pipeline(service, input_download_dir=http.url("/media/"),
                         ping_urls={"started": http.url("/hooks/started"), "finished": http.url("/hooks/finished")})  # fmt: skip
    job = _run(service, "tears.mp4", pipeline={"id": pipeline})
    assert job["status"] == "SUCCESS", job
    key = base64.b64decode(service.account.client_secret)
    for event in ("started", "finished"):
        [(headers, body)] = _received(http, f"/hooks/{event}", 1)
        expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Leaktrace-Signature"], expected)
        payload = json.loads(body)
        assert (payload["event"], payload["kind"], payload["id"]) == (event, "job", job["id"])
    assert json.loads(_received(http, "/hooks/finished", 1)[0][1])["status"] == "SUCCESS"


def test_a_title_held_above_its_strength_sends_a_warning_ping(service: Service, http: HTTPTestServer) -> None:
    # Sintel is too smooth to hide the mark at `strong`: the engine holds it above 40 dB.
    http.routes["/media/sintel.mp4"] = send_bytes((TESTDATA / "sintel_1920x818p30_10s.mp4").read_bytes())
    http.routes["/hooks/warning"] = send_bytes(b"ok")
    pipeline = _pipeline(service, input_download_dir=http.url("/media/"), ping_urls={"warning": http.url("/hooks/warning")})
    job = _run(service, "sintel.mp4", pipeline={"id": pipeline}, autograph={"watermark_strength": "strong"})
    assert job["status"] == "SUCCESS", job
    [(headers, body)] = _received(http, "/hooks/warning", 1)
    assert json.loads(body)["id"] == job["id"] and headers["X-Leaktrace-Event"] == "warning"
