"""Pings end to end: a real Huey consumer delivers signed POSTs to HTTP receivers on loopback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from http.server import BaseHTTPRequestHandler

import pytest

from leaktrace.config import Settings
from leaktrace.flows import pings
from leaktrace.store import accounts
from leaktrace.store.db import open_database
from leaktrace.store.models import Backtrace, Job, Pipeline
from leaktrace.tasks.queue import embedded_consumer, make_queue
from tests.media.servers import HTTPTestServer, send_bytes

WAIT_S = 15.0


def wait_for(condition, *, timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def reference_signature(body: bytes, client_secret: str) -> str:
    """The receiver's check, written from the documentation: HMAC-SHA256 under the decoded secret."""
    return "sha256=" + hmac.new(base64.b64decode(client_secret), body, hashlib.sha256).hexdigest()


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        secret_key="test server key",
        fetch_allow_networks="127.0.0.0/8",
        ping_attempts=4,
        ping_retry_delay=0.05,
        ping_timeout=2,
    )


@pytest.fixture
def app_secret(settings):
    db = open_database(settings.resolved_database_url)
    user = accounts.create_user(db, name="studio")
    app, secret = accounts.create_application(db, settings.fernet(), user_id=user.id, name="hooks", scopes=["mediahub"])
    return app.id, secret


@pytest.fixture
def consumer(settings):
    queue = make_queue(settings)
    worker = embedded_consumer(queue, workers=1)
    worker.start()
    yield queue
    worker.stop(graceful=True)


@pytest.fixture
def receiver():
    with HTTPTestServer() as server:
        yield server


def job_and_pipeline(*, application_id: str, url: str) -> tuple[Job, Pipeline]:
    job = Job(
        id="job42",
        application_id=application_id,
        status="SUCCESS",
        percentage_completed=100,
        error_code=None,
        error_msg=None,
    )
    pipeline = Pipeline(id="pipe1", ping_urls={"started": None, "finished": url, "warning": None, "error": None})
    return job, pipeline


def test_a_receiver_gets_the_signed_ping(settings, app_secret, consumer, receiver):
    application_id, secret = app_secret
    receiver.routes["/hook"] = send_bytes(b"", status=204)
    job, pipeline = job_and_pipeline(application_id=application_id, url=receiver.url("/hook?token=abc"))
    ping = pings.job_ping(job, pipeline, event="finished", base_url="https://media.example.com")
    assert pings.job_ping(job, pipeline, event="started", base_url="https://x") is None  # no URL for it

    consumer.submit_ping(ping)
    assert wait_for(lambda: len(receiver.requests) == 1)
    method, path, headers, body = receiver.requests[0]
    assert (method, path) == ("POST", "/hook?token=abc")
    payload = json.loads(body)
    assert payload == {
        "event": "finished",
        "kind": "job",
        "id": "job42",
        "status": "SUCCESS",
        "percentage_completed": 100,
        "error_code": None,
        "error_msg": None,
        "href": "https://media.example.com/v1/jobs/job42",
        "occurred_at": payload["occurred_at"],
    }
    assert abs(payload["occurred_at"] - time.time() * 1000) < 60_000
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Leaktrace-Event"] == "finished"
    assert headers["X-Leaktrace-Delivery"] == ping.delivery_id
    assert hmac.compare_digest(headers["X-Leaktrace-Signature"], reference_signature(body, secret))
    assert not hmac.compare_digest(headers["X-Leaktrace-Signature"], reference_signature(body + b" ", secret))


def test_a_failing_receiver_gets_the_ping_on_the_third_attempt(settings, app_secret, consumer, receiver):
    application_id, secret = app_secret
    answers = iter([503, 500, 200, 200])

    def flaky(handler: BaseHTTPRequestHandler) -> None:
        send_bytes(b"", status=next(answers))(handler)

    receiver.routes["/flaky"] = flaky
    job, pipeline = job_and_pipeline(application_id=application_id, url=receiver.url("/flaky"))
    consumer.submit_ping(pings.job_ping(job, pipeline, event="finished", base_url="https://m"))
    assert wait_for(lambda: len(receiver.requests) == 3)
    time.sleep(2.5)  # longer than the next retry would take: none comes
    assert len(receiver.requests) == 3
    bodies = {request[3] for request in receiver.requests}
    deliveries = {request[2]["X-Leaktrace-Delivery"] for request in receiver.requests}
    signatures = {request[2]["X-Leaktrace-Signature"] for request in receiver.requests}
    assert len(bodies) == len(deliveries) == len(signatures) == 1  # the same ping each time
    assert signatures == {reference_signature(bodies.pop(), secret)}


def test_a_dead_receiver_never_raises(settings, app_secret, consumer):
    application_id, _ = app_secret
    with socket.create_server(("127.0.0.1", 0)) as probe:
        dead_port = probe.getsockname()[1]  # closed when the block ends: nothing listens there
    job, pipeline = job_and_pipeline(application_id=application_id, url=f"http://127.0.0.1:{dead_port}/hook")
    ping = pings.job_ping(job, pipeline, event="finished", base_url="https://m")
    started = time.monotonic()
    consumer.submit_ping(ping)
    assert time.monotonic() - started < 1.0

    db = open_database(settings.resolved_database_url)
    delays = [pings.attempt(db, settings, ping, number=n) for n in range(1, settings.ping_attempts + 1)]
    assert delays == [0.05, 0.1, 0.2, None]  # doubling, then given up


def test_pings_are_not_sent_where_they_cannot_be(settings, app_secret, receiver):
    application_id, _ = app_secret
    db = open_database(settings.resolved_database_url)
    receiver.routes["/hook"] = send_bytes(b"", status=204)
    job, pipeline = job_and_pipeline(application_id=application_id, url=receiver.url("/hook"))
    ping = pings.job_ping(job, pipeline, event="finished", base_url="https://m")

    guarded = settings.model_copy(update={"fetch_allow_networks": ""})
    assert pings.attempt(db, guarded, ping, number=1) is None  # refused address: no retry
    unknown_app = pings.Ping(**{**ping.__dict__, "application_id": "gone"})
    assert pings.attempt(db, settings, unknown_app, number=1) is None
    not_http = pings.Ping(**{**ping.__dict__, "url": "file:///etc/passwd"})
    assert pings.attempt(db, settings, not_http, number=1) is None
    assert receiver.requests == []


def test_backtrace_pings_follow_the_pipeline_switch():
    backtrace = Backtrace(id="bt1", application_id="app", status="SUCCESS", percentage_completed=100)
    urls = {"started": None, "finished": "https://hooks.example.com/x", "warning": None, "error": None}
    off = Pipeline(id="p", ping_urls=urls, enable_backtrace_pings=None)
    on = Pipeline(id="p", ping_urls=urls, enable_backtrace_pings=True)
    assert pings.backtrace_ping(backtrace, off, event="finished", base_url="https://m") is None
    ping = pings.backtrace_ping(backtrace, on, event="finished", base_url="https://m")
    assert ping is not None and json.loads(ping.body)["href"] == "https://m/v1/backtraces/bt1"
    assert json.loads(ping.body)["kind"] == "backtrace"
