"""The blob storage interface every backend implements, and the rules for keys.

A key is a relative POSIX path such as `pipelines/<id>/uploads/movie.mp4`. A prefix names a folder
of keys (`pipelines/<id>` and `pipelines/<id>/` are the same prefix) and covers every key below it,
at any depth. Blobs appear whole or not at all: writers stream into a temporary object that takes
the key's place only when the write finishes, so readers never see half a blob. Reads take byte
ranges, so HTTP Range requests and S3 ranged GETs map onto them directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

DEFAULT_CHUNK_BYTES = 1024 * 1024  # what one iteration of a ranged read yields at most
MAX_KEY_CHARS = 1024  # S3's limit on object key length (in UTF-8 bytes, close enough here)


class InvalidKey(ValueError):
    """A key or prefix that is not a plain relative path inside the store."""


class BlobNotFound(FileNotFoundError):
    """No blob at this key."""


@dataclass(frozen=True)
class BlobInfo:
    """What the store knows about one blob: its size in bytes and when it was last written."""

    size: int
    modified_ms: int  # epoch milliseconds


class Storage(Protocol):
    """Where every blob of the service lives (uploads, inputs, outputs, thumbnails, prepared titles)."""

    def writer(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """A file to stream a blob into; it appears at `key` only if the block exits cleanly.

        On an exception inside the block the temporary object is removed and nothing changes at
        `key` (an older blob there stays as it was).
        """
        ...

    def put_file(self, key: str, path: Path) -> None:
        """Store a finished local file at `key` atomically; the local file is consumed."""
        ...

    def put_tree(self, prefix: str, folder: Path) -> None:
        """Store every file below `folder` under `prefix`, keeping relative paths; consumes them.

        Each blob appears atomically, the tree as a whole does not: callers record the tree as
        done (a database row) only after this returns.
        """
        ...

    def read_range(
        self, key: str, start: int = 0, end: int | None = None, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES
    ) -> Iterator[bytes]:
        """Bytes `[start, end)` of a blob (`end` None or past the size: to the end), in chunks.

        Raises `BlobNotFound` when called, not when iterated, so a caller can answer 404 before it
        starts a response.
        """
        ...

    def stat(self, key: str) -> BlobInfo | None:
        """Size and modification time of a blob, or None when there is none."""
        ...

    def exists(self, key: str) -> bool:
        """True when a blob is stored at `key`."""
        ...

    def delete(self, key: str) -> None:
        """Remove a blob; a missing one is fine."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Remove every blob under `prefix`; returns how many there were."""
        ...

    def keys(self, prefix: str) -> Iterator[str]:
        """Every key under `prefix`, in sorted order."""
        ...

    def local_path(self, key: str) -> Path | None:
        """A path ffmpeg or PyAV can read in place, or None when blobs are not on a local disk.

        Raises `BlobNotFound` for a missing blob on a local store. Read only: write through
        `writer` or `put_file`.
        """
        ...

    def download(self, key: str, dest: Path) -> None:
        """Copy a blob to a local file (works for every backend); `BlobNotFound` if missing."""
        ...

    def download_tree(self, prefix: str, dest: Path) -> None:
        """Copy every blob under `prefix` into the folder `dest`, keeping relative paths."""
        ...

    def discard_incomplete(self, *, older_than_s: float) -> int:
        """Remove temporary objects of writes a killed process never finished; returns how many.

        Only objects older than `older_than_s` go, so writes in progress are left alone.
        """
        ...


def check_key(key: str) -> str:
    """`key` itself when it is a valid blob key, else `InvalidKey`.

    Refused: empty keys, absolute paths, backslashes, NUL and other control characters, empty,
    `.` and `..` segments, a trailing slash, and keys longer than `MAX_KEY_CHARS`.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey("a storage key must be a non-empty string")
    if len(key) > MAX_KEY_CHARS:
        raise InvalidKey(f"a storage key has at most {MAX_KEY_CHARS} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise InvalidKey("a storage key must not contain control characters")
    if "\\" in key:
        raise InvalidKey("a storage key uses / as separator, never a backslash")
    if key.startswith("/"):
        raise InvalidKey("a storage key is relative (no leading /)")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKey(f"a storage key must not have empty, . or .. segments: {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """The folder key a prefix names, without its trailing slash; `InvalidKey` like `check_key`."""
    if isinstance(prefix, str) and prefix.endswith("/"):
        prefix = prefix[:-1]
    return check_key(prefix)
