"""file:// fetches, from the folders an operator lists in `LEAKTRACE_FETCH_LOCAL_DIRS` only.

The path is resolved (symlinks followed) before it is compared with the folders, so a link
inside an allowed folder that points elsewhere is refused; only regular files are read, and the
answer for a path outside the folders does not tell whether it exists.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from leaktrace.media.fetch.policy import FetchError, FetchPolicy
from leaktrace.media.fetch.source import CHUNK_BYTES, Source

LOCAL_HOSTS = ("", "localhost")


def allowed_path(uri: str, *, policy: FetchPolicy) -> Path:
    """The real path a file:// URI names, when inside an allowed folder; FetchError otherwise."""
    parts = urlsplit(uri)
    if parts.netloc.lower() not in LOCAL_HOSTS:
        raise FetchError("refused_address", "file:// URIs name local paths only (file:///path)")
    path = Path(unquote(parts.path))
    if "\0" in str(path):
        raise FetchError("invalid_uri", "a file:// path cannot contain NUL")
    if not path.is_absolute():
        raise FetchError("invalid_uri", "a file:// URI needs an absolute path")
    real = path.resolve()
    if not any(real.is_relative_to(folder.resolve()) for folder in policy.local_dirs):
        raise FetchError("refused_address", "the path is not inside a folder listed in LEAKTRACE_FETCH_LOCAL_DIRS")
    return real


@contextlib.contextmanager
def open_file(uri: str, *, policy: FetchPolicy) -> Iterator[Source]:
    """The local file a file:// URI names, as a Source."""
    real = allowed_path(uri, policy=policy)
    try:
        # O_NOFOLLOW: the checked path must still be a file, not a link swapped in since.
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise FetchError("not_found", "no such file") from None
    except OSError as exc:
        raise FetchError("fetch_failed", f"cannot open the file ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise FetchError("not_found", "not a regular file")
        yield Source(chunks=iter(lambda: handle.read(CHUNK_BYTES), b""), total=info.st_size)
