"""Server-side fetches: copy the object at a URI to a local file, through the address guard.

`fetch(uri, dest, policy=…)` handles `https`/`http` (httpx), `s3` (boto3), `sftp` (paramiko) and
`file` (allowed local folders only). Every network connection passes `guard` (public addresses
only, unless allowed; the address checked is the address connected to). The object is streamed
into a temporary sibling of `dest` and renamed into place when complete. Failures raise
`FetchError` with a `code`; messages never contain the URI's credentials (`redact`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from urllib.parse import urlsplit

from leaktrace.media.fetch.guard import guarded_client
from leaktrace.media.fetch.http import open_http
from leaktrace.media.fetch.local import open_file
from leaktrace.media.fetch.policy import CODES, FetchError, FetchPolicy
from leaktrace.media.fetch.s3 import open_s3
from leaktrace.media.fetch.sftp import open_sftp
from leaktrace.media.fetch.source import Cancelled, Progress, Source, write
from leaktrace.media.fetch.uris import check_fetch_uri, redact, resolve, resolve_logo, scrub

__all__ = [
    "CODES",
    "FetchError",
    "FetchPolicy",
    "fetch",
    "guarded_client",
    "redact",
    "resolve",
    "resolve_logo",
]

Opener = Callable[..., AbstractContextManager[Source]]
OPENERS: dict[str, Opener] = {
    "https": open_http,
    "http": open_http,
    "s3": open_s3,
    "sftp": open_sftp,
    "file": open_file,
}


def fetch(
    uri: str,
    dest: Path,
    *,
    policy: FetchPolicy,
    progress: Progress | None = None,
    cancelled: Cancelled | None = None,
) -> int:
    """Copy the object at `uri` to the file `dest` and return its size in bytes.

    `progress(done, total)` is called after every chunk (`total` None when unknown);
    `cancelled()` is asked before every chunk and stops the fetch with FetchError(cancelled).
    On any failure nothing is left at `dest`.
    """
    try:
        check_fetch_uri(uri, field="the URI")
        if cancelled is not None and cancelled():
            raise FetchError("cancelled", "the fetch was cancelled")
        with OPENERS[urlsplit(uri).scheme.lower()](uri, policy=policy) as source:
            return write(source, dest, policy=policy, progress=progress, cancelled=cancelled)
    except FetchError as exc:
        # `from None`: a chained library exception could print the URI's credentials.
        raise FetchError(exc.code, scrub(exc.message, uri)) from None
