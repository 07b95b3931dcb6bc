"""Pings: signed JSON POSTs to a pipeline's `ping_urls` when a job or backtrace changes state.

Events are `started`, `finished` (SUCCESS), `warning` and `error` (FAILURE); a backtrace pings
only when its pipeline has `enable_backtrace_pings`. The body is compact UTF-8 JSON:

    {"event": "finished", "kind": "job", "id": "<job id>", "status": "SUCCESS",
     "percentage_completed": 100, "error_code": null, "error_msg": null,
     "href": "<public URL>/v1/jobs/<id>", "occurred_at": <Unix time, ms>}

and the request carries

    Content-Type: application/json
    X-Leaktrace-Event: finished
    X-Leaktrace-Delivery: <id, the same on every retry of one ping>
    X-Leaktrace-Signature: sha256=<lowercase hex HMAC-SHA256 of the body bytes>

keyed, as signed links are (`delivery.signing.secret_key`), with the base64-decoded
`client_secret` of the application that submitted the job. The body is fixed when the event
happens; the secret is read from the database at each attempt and never enters the queue.

Delivery never blocks or fails the job: the flow queues the ping (`TaskQueue.submit_ping`), the
queue's `send_ping` task calls `attempt`, and when that asks for a retry the task re-schedules
itself `retry_delay_s` later: `LEAKTRACE_PING_RETRY_DELAY` (30 s) doubling at each attempt, up
to `LEAKTRACE_PING_ATTEMPTS` (8) attempts, about an hour in all. A 2xx answer delivers; any
other answer or a network error is retried; a refused address, or an application that is gone
or disabled, ends the ping at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from leaktrace.config import Settings
from leaktrace.delivery.signing import secret_key
from leaktrace.ids import now_ms
from leaktrace.media.fetch import FetchError, FetchPolicy, guarded_client, redact
from leaktrace.store import accounts, jobs
from leaktrace.store.db import Database
from leaktrace.store.models import Backtrace, Job, Pipeline

log = logging.getLogger(__name__)

EVENTS = ("started", "finished", "warning", "error")
KINDS = ("job", "backtrace")
SIGNATURE_HEADER = "X-Leaktrace-Signature"
EVENT_HEADER = "X-Leaktrace-Event"
DELIVERY_HEADER = "X-Leaktrace-Delivery"
SIGNATURE_PREFIX = "sha256="
BACKOFF_FACTOR = 2
PING_SCHEMES = ("https", "http")
FINAL_CODES = ("refused_address", "invalid_uri")  # retrying cannot help


@dataclass(frozen=True)
class Ping:
    """One ping to send: where, whose secret signs it, and the exact body (JSON text)."""

    url: str
    application_id: str
    event: str
    delivery_id: str
    body: str


def make_ping(
    *,
    ping_urls: dict[str, Any] | None,
    application_id: str | None,
    event: str,
    kind: str,
    object_id: str,
    status: str,
    percentage_completed: int,
    error_code: str | None,
    error_msg: str | None,
    href: str,
    occurred_at: int | None = None,
) -> Ping | None:
    """The ping for `event`, or None when the pipeline has no URL for it or no application signs it."""
    if event not in EVENTS or kind not in KINDS:
        raise ValueError(f"unknown ping event {event!r} or kind {kind!r}")
    url = (ping_urls or {}).get(event)
    if not url or application_id is None:
        return None
    payload = {
        "event": event,
        "kind": kind,
        "id": object_id,
        "status": status,
        "percentage_completed": percentage_completed,
        "error_code": error_code,
        "error_msg": error_msg,
        "href": href,
        "occurred_at": now_ms() if occurred_at is None else occurred_at,
    }
    return Ping(
        url=url,
        application_id=application_id,
        event=event,
        delivery_id=uuid.uuid4().hex,
        body=orjson.dumps(payload).decode(),
    )


def job_ping(job: Job, pipeline: Pipeline, *, event: str, base_url: str) -> Ping | None:
    """The ping of a job's `event` under its pipeline's `ping_urls` (None when not configured)."""
    return _state_ping(job, pipeline, kind="job", event=event, base_url=base_url)


def backtrace_ping(backtrace: Backtrace, pipeline: Pipeline, *, event: str, base_url: str) -> Ping | None:
    """The ping of a backtrace's `event`; None unless the pipeline enables backtrace pings."""
    if not pipeline.enable_backtrace_pings:
        return None
    return _state_ping(backtrace, pipeline, kind="backtrace", event=event, base_url=base_url)


def _state_ping(work: Job | Backtrace, pipeline: Pipeline, *, kind: str, event: str, base_url: str) -> Ping | None:
    """A ping carrying the current state of a job or backtrace row."""
    return make_ping(
        ping_urls=pipeline.ping_urls,
        application_id=work.application_id,
        event=event,
        kind=kind,
        object_id=work.id,
        status=work.status,
        percentage_completed=work.percentage_completed,
        error_code=work.error_code,
        error_msg=work.error_msg,
        href=f"{base_url}/v1/{kind}s/{work.id}",
    )


def signature(body: bytes, client_secret: str) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of `body`."""
    return SIGNATURE_PREFIX + hmac.new(secret_key(client_secret), body, hashlib.sha256).hexdigest()


def post(ping: Ping, *, client_secret: str, policy: FetchPolicy) -> int:
    """POST `ping` once through the address guard; returns the HTTP status (redirects not followed)."""
    if urlsplit(ping.url).scheme.lower() not in PING_SCHEMES:
        raise FetchError("invalid_uri", "a ping URL must be http(s)")
    body = ping.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Leaktrace-Ping",
        EVENT_HEADER: ping.event,
        DELIVERY_HEADER: ping.delivery_id,
        SIGNATURE_HEADER: signature(body, client_secret),
    }
    with guarded_client(policy) as client:
        return client.post(ping.url, content=body, headers=headers).status_code


def retry_delay_s(attempt: int, *, first_delay_s: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): d, 2d, 4d, …"""
    return first_delay_s * BACKOFF_FACTOR ** (attempt - 1)


def ping_policy(settings: Settings) -> FetchPolicy:
    """The fetch policy with the ping timeout for connecting and for the answer."""
    timeout_s = settings.ping_timeout
    return dataclasses.replace(FetchPolicy.from_settings(settings), connect_timeout_s=timeout_s, read_timeout_s=timeout_s)


def attempt(db: Database, settings: Settings, ping: Ping, *, number: int) -> float | None:
    """Try to deliver `ping` (attempt `number`, 1-based); the delay before the next attempt, or
    None when it is done (delivered, given up, or not deliverable). Never raises."""
    where = redact(ping.url)
    try:
        secret = accounts.signing_secret(db, settings.fernet(), application_id=ping.application_id)
        if secret is None:
            log.warning("ping %s to %s dropped: its application is gone or disabled", ping.delivery_id, where)
            return None
        status = post(ping, client_secret=secret, policy=ping_policy(settings))
        if 200 <= status < 300:
            return None
        reason = f"HTTP {status}"
    except FetchError as exc:
        if exc.code in FINAL_CODES:
            log.warning("ping %s to %s not sent: %s", ping.delivery_id, where, exc.message)
            return None
        reason = exc.message
    except httpx.HTTPError as exc:
        reason = type(exc).__name__
    except Exception:  # a ping must never fail the work it reports on
        log.exception("ping %s to %s failed unexpectedly", ping.delivery_id, where)
        reason = "unexpected error"
    if number >= settings.ping_attempts:
        log.warning("ping %s to %s given up after %d attempts (%s)", ping.delivery_id, where, number, reason)
        return None
    delay_s = retry_delay_s(number, first_delay_s=settings.ping_retry_delay)
    log.info("ping %s to %s failed (%s); attempt %d in %.0f s", ping.delivery_id, where, reason, number + 1, delay_s)
    return delay_s


def ping_for_job(db: Database, job_id: str, *, event: str, base_url: str) -> Ping | None:
    """The ping of job `job_id`'s `event` as the job stands now; None when it or its pipeline is gone."""
    found = jobs.with_pipeline(db, job_id=job_id)
    return job_ping(*found, event=event, base_url=base_url) if found else None
