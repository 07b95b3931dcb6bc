"""sftp:// fetches: `sftp://login:password@host:port/path` through paramiko.

The TCP connection is opened by the guard (to the checked address) and handed to paramiko. The
URI's path is the absolute path on the server. The URI format has no place for a host key, so the
server's key is not pinned: the password travels inside SSH's encryption, but a server that can
intercept the connection is not detected (see docs/api-decisions.md).
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

import paramiko

from leaktrace.media.fetch.guard import connect
from leaktrace.media.fetch.policy import FetchError, FetchPolicy
from leaktrace.media.fetch.source import CHUNK_BYTES, Source, translated, translating

DEFAULT_PORT = 22
# Read-ahead: requests of 32 KiB in flight at once (2 MiB), which hides the round trip without
# asking for the whole file up front.
MAX_REQUESTS_IN_FLIGHT = 64


def _translate(exc: Exception) -> FetchError | None:
    if isinstance(exc, paramiko.AuthenticationException):
        return FetchError("fetch_failed", "the SFTP server refused the login")
    if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
        return FetchError("not_found", "no such file on the SFTP server")
    if isinstance(exc, paramiko.SSHException | OSError | EOFError):
        return FetchError("fetch_failed", f"SFTP: {type(exc).__name__}: {exc}")
    return None


@contextlib.contextmanager
def open_sftp(uri: str, *, policy: FetchPolicy) -> Iterator[Source]:
    """The file an sftp:// URI names, as a Source."""
    parts = urlsplit(uri)
    path = unquote(parts.path)
    if not parts.hostname or not path.strip("/"):
        raise FetchError("invalid_uri", "an sftp URI is sftp://login:password@host:port/path")
    sock = connect(parts.hostname, parts.port or DEFAULT_PORT, policy=policy)
    transport = paramiko.Transport(sock)
    try:
        with translating(_translate):
            transport.banner_timeout = policy.connect_timeout_s
            transport.auth_timeout = policy.connect_timeout_s
            transport.connect(username=unquote(parts.username or ""), password=unquote(parts.password or ""))
            sftp = paramiko.SFTPClient.from_transport(transport)
            if sftp is None:
                raise FetchError("fetch_failed", "the SFTP server opened no session")
            sftp.get_channel().settimeout(policy.read_timeout_s)
            total = sftp.stat(path).st_size
            remote = sftp.open(path, "rb")
            remote.prefetch(total, max_concurrent_requests=MAX_REQUESTS_IN_FLIGHT)
        with remote:
            yield Source(chunks=translated(iter(lambda: remote.read(CHUNK_BYTES), b""), _translate), total=total)
    finally:
        transport.close()
