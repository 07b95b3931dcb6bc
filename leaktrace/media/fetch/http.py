"""http:// and https:// fetches: a GET through the guarded client, redirects followed by hand.

Each redirect hop is a new request through the same guarded client, so every host it names is
checked. A relative `Location` keeps the URI's user and password (same server); an absolute one
carries only its own. A redirect from https to http is refused, so credentials and content never
drop to clear text. The body is taken as stored (`Accept-Encoding: identity`, raw bytes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx

from leaktrace.media.fetch.guard import guarded_client
from leaktrace.media.fetch.policy import FetchError, FetchPolicy
from leaktrace.media.fetch.source import CHUNK_BYTES, Source, translated, translating
from leaktrace.media.fetch.uris import redact

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MISSING_STATUSES = frozenset({404, 410})
HEADERS = {"Accept-Encoding": "identity", "User-Agent": "Leaktrace-Fetch"}


def _translate(exc: Exception) -> FetchError | None:
    if isinstance(exc, httpx.HTTPError):
        return FetchError("fetch_failed", f"{type(exc).__name__}: {exc}")
    return None


def _follow(client: httpx.Client, url: httpx.URL) -> httpx.Response:
    """The first response that is not a redirect, at most MAX_REDIRECTS hops away."""
    for _ in range(MAX_REDIRECTS + 1):
        response = client.send(client.build_request("GET", url, headers=HEADERS), stream=True)
        if response.status_code not in REDIRECT_STATUSES:
            return response
        location = response.headers.get("location")
        response.close()
        if not location:
            raise FetchError("fetch_failed", f"HTTP {response.status_code} without a Location from {redact(str(url))}")
        target = url.join(location)
        if target.scheme not in ("http", "https"):
            raise FetchError("fetch_failed", f"redirect to a {target.scheme or 'relative'} URL is not followed")
        if url.scheme == "https" and target.scheme == "http":
            raise FetchError("fetch_failed", "a redirect from https to http is not followed")
        url = target
    raise FetchError("fetch_failed", f"more than {MAX_REDIRECTS} redirects")


@contextlib.contextmanager
def open_http(uri: str, *, policy: FetchPolicy) -> Iterator[Source]:
    """The object at an http(s) URI, as a Source."""
    with guarded_client(policy) as client:
        with translating(_translate):
            response = _follow(client, httpx.URL(uri))
        try:
            if response.status_code in MISSING_STATUSES:
                raise FetchError("not_found", f"HTTP {response.status_code} for {redact(str(response.url))}")
            if not response.is_success:
                raise FetchError("fetch_failed", f"HTTP {response.status_code} for {redact(str(response.url))}")
            length = response.headers.get("content-length")
            total = int(length) if length and length.isdigit() else None
            yield Source(chunks=translated(response.iter_raw(CHUNK_BYTES), _translate), total=total)
        finally:
            response.close()
