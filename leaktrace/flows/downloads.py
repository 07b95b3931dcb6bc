"""What a download sends: a stored file, or one tag's copy of an AutoGraph title, read from storage.

Both are a `Content`: an ordered list of byte ranges of stored blobs (`Piece`s) laid end to end.
A plain file is one piece. A tag's copy is `init.mp4` then, for every position, that position's
fragment of `A.m4s` or `B.m4s` as the tag's codeword picks (the layout of
`autograph.assemble.variant_pieces`, on storage keys instead of local paths), so it streams
straight from the prepared fragments, never re-encoded and never built whole. Any byte range is
read with `Storage.read_range`, piece by piece, in chunks.

`InFlight` counts the deliveries of each file and tag running in this process, for
`max_parallel_downloads`.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from leaktrace.autograph.code import codeword
from leaktrace.autograph.package import INDEX_FILE, INIT_FILE, KEY_FILE, VARIANT_FILES
from leaktrace.storage.base import DEFAULT_CHUNK_BYTES, BlobNotFound, Storage
from leaktrace.store.models import File

TITLE_CACHE_ENTRIES = 64  # prepared titles whose index and key stay parsed in memory


class Unavailable(Exception):
    """The file's bytes are missing or do not match their index: nothing can be delivered."""


@dataclass(frozen=True)
class Piece:
    """`size` bytes of the blob at `key`, from `offset`."""

    key: str
    offset: int
    size: int


@dataclass(frozen=True)
class TitleLayout:
    """What the copy step needs from a prepared title in storage: its key and fragment index."""

    prefix: str
    key: bytes
    init_size: int
    fragments: tuple[dict[str, Any], ...]

    def __repr__(self) -> str:  # keep the title key out of logs and tracebacks
        return f"TitleLayout(prefix={self.prefix!r}, positions={len(self.fragments)})"


class Content:
    """Pieces of stored blobs laid end to end: `.size`, and `.chunks(start, end)` of any range."""

    def __init__(self, storage: Storage, pieces: list[Piece]) -> None:
        self._storage = storage
        self._pieces = [piece for piece in pieces if piece.size > 0]
        self._starts = list(itertools.accumulate((piece.size for piece in self._pieces), initial=0))
        self.size: int = self._starts[-1]

    def chunks(self, start: int, end: int, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[bytes]:
        """Bytes `[start, end)` of the content (clipped to its size), in chunks of at most `chunk_bytes`."""
        end = min(end, self.size)
        index = bisect.bisect_right(self._starts, start) - 1
        while start < end:
            piece = self._pieces[index]
            within = start - self._starts[index]
            take = min(piece.size - within, end - start)
            first = piece.offset + within
            yield from self._storage.read_range(piece.key, first, first + take, chunk_bytes=chunk_bytes)
            start += take
            index += 1


def read_json(storage: Storage, key: str) -> Any:
    return json.loads(b"".join(storage.read_range(key)))


@functools.lru_cache(maxsize=TITLE_CACHE_ENTRIES)
def _layout(storage: Storage, prefix: str, modified_ms: int) -> TitleLayout:
    """The parsed index and key of the title under `prefix`; cached while index.json is unchanged."""
    index = read_json(storage, prefix + INDEX_FILE)
    key = bytes.fromhex(read_json(storage, prefix + KEY_FILE)["key"])
    return TitleLayout(prefix=prefix, key=key, init_size=index["init_size"], fragments=tuple(index["fragments"]))


def title_layout(storage: Storage, prefix: str) -> TitleLayout:
    """The layout of the prepared title stored under `prefix` (with its trailing slash)."""
    info = storage.stat(prefix + INDEX_FILE)
    if info is None:
        raise Unavailable(f"the prepared title under {prefix} has no {INDEX_FILE}")
    try:
        return _layout(storage, prefix, info.modified_ms)
    except BlobNotFound as exc:
        raise Unavailable(f"the prepared title under {prefix} is incomplete") from exc


def tag_pieces(layout: TitleLayout, tag: str) -> list[Piece]:
    """The pieces of `tag`'s copy: init, then fragment i of A (codeword bit 0) or B (bit 1)."""
    bits = codeword(layout.key, tag, len(layout.fragments))
    pieces = [Piece(layout.prefix + INIT_FILE, 0, layout.init_size)]
    for entry, bit in zip(layout.fragments, bits):
        variant = "B" if bit else "A"
        ref = entry[variant.lower()]
        pieces.append(Piece(layout.prefix + VARIANT_FILES[variant], ref["offset"], ref["size"]))
    return pieces


def title_prefix(file: File) -> str:
    """The storage prefix of an AutoGraph file's prepared title (with its trailing slash)."""
    if not file.autograph or not file.storage_key:
        raise Unavailable("the file is not a stored AutoGraph output")
    return file.storage_key if file.storage_key.endswith("/") else file.storage_key + "/"


def _check_stored(storage: Storage, pieces: list[Piece]) -> None:
    """Every piece lies inside its blob, so a response never stops short of its Content-Length."""
    ends: dict[str, int] = {}
    for piece in pieces:
        ends[piece.key] = max(ends.get(piece.key, 0), piece.offset + piece.size)
    for key, end in ends.items():
        info = storage.stat(key)
        if info is None or info.size < end:
            raise Unavailable(f"{key} is missing or shorter than its index says")


def open_content(storage: Storage, file: File, *, tag: str | None) -> Content:
    """The bytes a download of `file` sends: its stored blob, or for an AutoGraph file `tag`'s copy."""
    if not file.storage_key:
        raise Unavailable("the file has no stored bytes")
    if file.autograph:
        if not tag:
            raise ValueError("an AutoGraph file is only delivered as a tag's copy")
        pieces = tag_pieces(title_layout(storage, title_prefix(file)), tag)
    else:
        info = storage.stat(file.storage_key)
        if info is None:
            raise Unavailable("the file's bytes are missing")
        pieces = [Piece(file.storage_key, 0, info.size)]
    _check_stored(storage, pieces)
    return Content(storage, pieces)


class InFlight:
    """Deliveries running in this process, per (file, tag): a thread-safe counter with a cap."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[tuple[str, str | None], int] = {}

    def running(self, file_id: str, tag: str | None) -> int:
        with self._lock:
            return self._running.get((file_id, tag), 0)

    def try_acquire(self, file_id: str, tag: str | None, *, limit: int | None) -> bool:
        """Count one more delivery unless `limit` are already running; False when refused."""
        with self._lock:
            running = self._running.get((file_id, tag), 0)
            if limit is not None and running >= limit:
                return False
            self._running[(file_id, tag)] = running + 1
            return True

    def release(self, file_id: str, tag: str | None) -> None:
        with self._lock:
            left = self._running.get((file_id, tag), 0) - 1
            if left > 0:
                self._running[(file_id, tag)] = left
            else:
                self._running.pop((file_id, tag), None)
