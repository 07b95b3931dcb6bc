"""What server-side fetches may do, and how they fail.

A `FetchPolicy` is built once from the settings (`FetchPolicy.from_settings`) and handed to every
fetch and ping; a pipeline's `download_options` may narrow or relax certificate checks for its own
fetches (`with_download_options`). A `FetchError` carries one of `CODES`, which the job flow maps to
the job's `error_code`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leaktrace.config import IPNetwork, Settings

CODES = (
    "fetch_failed",  # network, TLS, HTTP status, authentication, or a transfer cut short
    "refused_address",  # an address the guard refuses, or a local path outside the allowed folders
    "not_found",  # the server says the object does not exist
    "path_escape",  # a relative name that would leave its base (detectable at submission: 400)
    "invalid_uri",  # not a URI the service can fetch (scheme, missing host, malformed)
    "too_large",  # larger than LEAKTRACE_FETCH_MAX_BYTES
    "cancelled",  # the caller's `cancelled()` said so
)


class FetchError(Exception):
    """A fetch that did not produce the file; `code` is one of `CODES`, `message` has no secrets."""

    def __init__(self, code: str, message: str) -> None:
        if code not in CODES:
            raise ValueError(f"unknown fetch error code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class FetchPolicy:
    """Limits of server-side connections and local reads.

    `allowed_networks` are reachable although not public (the guard refuses every other
    non-global address); `local_dirs` are the only folders `file://` may read; `s3_endpoint_url`
    serves `s3://` URIs that name no `?endpoint=`; timeouts are in seconds.
    """

    allowed_networks: tuple[IPNetwork, ...] = ()
    local_dirs: tuple[Path, ...] = ()
    s3_endpoint_url: str | None = None
    certificate_check: bool = True
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    max_bytes: int = 64 * 1024**3

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        """The policy the `LEAKTRACE_FETCH_*` settings describe."""
        return cls(
            allowed_networks=settings.allowed_networks,
            local_dirs=tuple(path.resolve() for path in settings.local_input_dirs),
            s3_endpoint_url=settings.fetch_s3_endpoint_url,
            certificate_check=settings.fetch_certificate_check,
            connect_timeout_s=settings.fetch_connect_timeout,
            read_timeout_s=settings.fetch_read_timeout,
            max_bytes=settings.fetch_max_bytes,
        )

    def with_download_options(self, options: dict[str, Any] | None) -> FetchPolicy:
        """This policy under a pipeline's `download_options`: an explicit
        `https_certificate_check` (true or false) replaces the setting; null keeps it."""
        check = (options or {}).get("https_certificate_check")
        if check is None:
            return self
        return dataclasses.replace(self, certificate_check=bool(check))
