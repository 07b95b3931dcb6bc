"""s3:// fetches: `s3://access_key:secret_key@region/bucket/key` through boto3.

The endpoint is the URI's `endpoint` query parameter when present (`?endpoint=https://host:port`,
for a pipeline whose `input_download_dir` is on an S3-compatible server), else
`LEAKTRACE_FETCH_S3_ENDPOINT_URL`, else AWS's endpoint for the region. A custom endpoint is
addressed path-style (`endpoint/bucket/key`), which every S3-compatible server understands. A URI
without keys reads a public bucket unsigned: boto3 never looks for credentials of its own (its
search would ask the cloud metadata service, past the guard).

boto3 builds, signs and parses every request; the bytes travel through the guarded httpx client,
handed to boto3 from its documented `before-send` event, so the endpoint is checked and pinned
like any other server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import httpx
from botocore import UNSIGNED
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from leaktrace.media.fetch.guard import guarded_client
from leaktrace.media.fetch.policy import FetchError, FetchPolicy
from leaktrace.media.fetch.source import CHUNK_BYTES, Source, translated, translating

ENDPOINT_PARAM = "endpoint"
MAX_ATTEMPTS = 3  # boto3's own retries of throttled or failed requests
MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "404"})


class _RawBody:
    """The file-like `raw` body botocore reads, over a streamed httpx response."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._chunks = response.iter_raw(CHUNK_BYTES)
        self._pending = b""

    def read(self, amt: int | None = None) -> bytes:
        while amt is None or len(self._pending) < amt:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._pending += chunk
        size = len(self._pending) if amt is None else amt
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield from iter(lambda: self.read(CHUNK_BYTES), b"")

    def close(self) -> None:
        self._response.close()


def _sender(client: httpx.Client) -> Any:
    """A `before-send` handler that sends boto3's prepared request through `client`."""

    def send(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        outgoing = client.build_request(request.method, request.url, headers=dict(request.headers.items()), content=request.body)
        response = client.send(outgoing, stream=True)
        return AWSResponse(request.url, response.status_code, dict(response.headers.items()), _RawBody(response))

    return send


def _translate(exc: Exception) -> FetchError | None:
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", "unknown"))
        if code in MISSING_CODES:
            return FetchError("not_found", f"S3 says {code}")
        return FetchError("fetch_failed", f"S3 says {code}")
    if isinstance(exc, BotoCoreError | httpx.HTTPError):
        return FetchError("fetch_failed", f"{type(exc).__name__}: {exc}")
    return None


def _endpoint(query: str, *, policy: FetchPolicy) -> str | None:
    given = parse_qs(query).get(ENDPOINT_PARAM, [None])[-1] or policy.s3_endpoint_url
    if given is not None:
        parts = urlsplit(given)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError("invalid_uri", "an S3 endpoint must be an http(s) URL with a host")
    return given


@contextlib.contextmanager
def open_s3(uri: str, *, policy: FetchPolicy) -> Iterator[Source]:
    """The object an s3:// URI names, as a Source."""
    parts = urlsplit(uri)
    bucket, _, key = parts.path.lstrip("/").partition("/")
    if not parts.hostname or not bucket or not key:
        raise FetchError("invalid_uri", "an s3 URI is s3://access_key:secret_key@region/bucket/key")
    endpoint = _endpoint(parts.query, policy=policy)
    signed = bool(parts.username and parts.password)
    config = Config(
        connect_timeout=policy.connect_timeout_s,
        read_timeout=policy.read_timeout_s,
        retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        s3={"addressing_style": "path" if endpoint else "auto"},
        signature_version=None if signed else UNSIGNED,
    )
    with guarded_client(policy) as http:
        with translating(_translate):
            client = boto3.session.Session().client(
                "s3",
                region_name=parts.hostname,
                endpoint_url=endpoint,
                aws_access_key_id=unquote(parts.username) if signed else None,
                aws_secret_access_key=unquote(parts.password) if signed else None,
                config=config,
            )
            client.meta.events.register("before-send.s3", _sender(http))
            reply = client.get_object(Bucket=unquote(bucket), Key=unquote(key))
        body = reply["Body"]
        try:
            yield Source(chunks=translated(body.iter_chunks(CHUNK_BYTES), _translate), total=reply.get("ContentLength"))
        finally:
            body.close()
