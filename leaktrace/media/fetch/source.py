"""The one way every scheme hands bytes over: a `Source`, written to its destination by `write`.

A source is an iterator of chunks plus the size the server announced. `write` streams it into a
temporary sibling of the destination and renames it into place only when every byte arrived, so
a cancelled, failed or too-large transfer leaves nothing at the destination. `translated` turns a
library's exceptions into FetchErrors while the chunks are read.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from leaktrace.media.fetch.policy import FetchError, FetchPolicy

CHUNK_BYTES = 1024 * 1024

Progress = Callable[[int, int | None], None]  # (bytes written so far, total bytes or None)
Cancelled = Callable[[], bool]
Translate = Callable[[Exception], FetchError | None]  # None: not a failure of the transfer


@dataclass(frozen=True)
class Source:
    """An object being fetched: its chunks, and its size when the server announced one."""

    chunks: Iterator[bytes]
    total: int | None


@contextlib.contextmanager
def translating(translate: Translate) -> Iterator[None]:
    """Raise the FetchError `translate` gives for an exception of the block (others pass)."""
    try:
        yield
    except FetchError:
        raise
    except Exception as exc:
        error = translate(exc)
        if error is None:
            raise
        raise error from None


def translated(chunks: Iterator[bytes], translate: Translate) -> Iterator[bytes]:
    """`chunks`, with reading errors turned into FetchErrors by `translate`."""
    with translating(translate):
        yield from chunks


def check_size(total: int | None, *, policy: FetchPolicy) -> None:
    """FetchError(too_large) when an announced size is over the limit, before any byte moves."""
    if total is not None and total > policy.max_bytes:
        raise FetchError("too_large", f"the object has {total} bytes; the limit is {policy.max_bytes}")


def write(
    source: Source,
    dest: Path,
    *,
    policy: FetchPolicy,
    progress: Progress | None = None,
    cancelled: Cancelled | None = None,
) -> int:
    """Copy `source` to `dest` (whose folder must exist) and return the byte count."""
    check_size(source.total, policy=policy)
    fd, temporary = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        written = 0
        with os.fdopen(fd, "wb") as out:
            for chunk in source.chunks:
                if cancelled is not None and cancelled():
                    raise FetchError("cancelled", "the fetch was cancelled")
                written += len(chunk)
                if written > policy.max_bytes:
                    raise FetchError("too_large", f"the object exceeds the limit of {policy.max_bytes} bytes")
                out.write(chunk)
                if progress is not None:
                    progress(written, source.total)
        if source.total is not None and written != source.total:
            raise FetchError("fetch_failed", f"the transfer ended after {written} of {source.total} bytes")
        os.replace(temporary, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return written
