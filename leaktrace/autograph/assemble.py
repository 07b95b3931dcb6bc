"""A tag's copy: `init.mp4` then fragment i of A or B per the tag's codeword, as a virtual file.

Nothing is decoded, encoded or rewritten: fragment i of A and of B carry the same sequence number
and decode time and address their samples relative to their own `moof`, so the copy is the plain
concatenation of byte ranges of `init.mp4`, `A.m4s` and `B.m4s`. The same tag always gives the same
bytes. `TagCopy` knows its size and reads any byte range without building the file (HTTP Range).
"""

from __future__ import annotations

import bisect
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from leaktrace.autograph.code import codeword
from leaktrace.autograph.package import PreparedTitle, load_title

DEFAULT_CHUNK = 1 << 20


class VirtualFile:
    """Byte ranges of files laid end to end, read lazily with `os.pread` (thread-safe, no seek state).

    Use it as a context manager (or call `close()`) to release its file descriptors.
    """

    def __init__(self, pieces: Sequence[tuple[Path, int, int]]):
        """`pieces`: (path, offset, size) in copy order. The files are opened here, once."""
        self._fds: dict[Path, int] = {}
        for path in {path for path, _, _ in pieces}:
            self._fds[path] = os.open(path, os.O_RDONLY)
        self._pieces = [(path, offset, size) for path, offset, size in pieces if size > 0]
        self._starts = np.cumsum([0] + [size for _, _, size in self._pieces]).tolist()
        self.size: int = self._starts[-1]

    def _fd(self, path: Path) -> int:
        return self._fds[path]

    def read(self, offset: int, length: int) -> bytes:
        """Return bytes [offset, offset+length) of the copy, clipped to its end."""
        if offset < 0 or length < 0:
            raise ValueError("offset and length must be non-negative")
        end = min(offset + length, self.size)
        parts: list[bytes] = []
        piece = bisect.bisect_right(self._starts, offset) - 1
        while offset < end:
            path, file_offset, size = self._pieces[piece]
            within = offset - self._starts[piece]
            take = min(size - within, end - offset)
            data = os.pread(self._fd(path), take, file_offset + within)
            if len(data) != take:
                raise OSError(f"{path} is shorter than its index says")
            parts.append(data)
            offset += take
            piece += 1
        return b"".join(parts)

    def iter_chunks(self, start: int = 0, end: int | None = None, chunk_size: int = DEFAULT_CHUNK) -> Iterator[bytes]:
        """Yield the bytes [start, end) in chunks of at most chunk_size (for streaming responses)."""
        end = self.size if end is None else min(end, self.size)
        while start < end:
            chunk = self.read(start, min(chunk_size, end - start))
            yield chunk
            start += len(chunk)

    def __iter__(self) -> Iterator[bytes]:
        return self.iter_chunks()

    def write_to(self, out_path: str | os.PathLike[str]) -> int:
        """Write the whole copy to out_path with kernel-side copies; return its size."""
        with open(out_path, "wb") as out:
            out_fd = out.fileno()
            for path, offset, size in self._pieces:
                src = self._fd(path)
                copied = 0
                while copied < size:
                    n = os.sendfile(out_fd, src, offset + copied, size - copied)
                    if n == 0:
                        raise OSError(f"{path} is shorter than its index says")
                    copied += n
        return self.size

    def open(self) -> io.BufferedReader:
        """A seekable read-only file object over the copy (e.g. for `av.open`)."""
        return io.BufferedReader(_VirtualRaw(self), buffer_size=DEFAULT_CHUNK)

    def close(self) -> None:
        for fd in getattr(self, "_fds", {}).values():
            os.close(fd)
        getattr(self, "_fds", {}).clear()

    def __enter__(self) -> VirtualFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class _VirtualRaw(io.RawIOBase):
    def __init__(self, vfile: VirtualFile):
        self._vfile, self._pos = vfile, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._vfile.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._vfile.read(self._pos, len(buffer))
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _as_title(title: PreparedTitle | str | os.PathLike[str]) -> PreparedTitle:
    return title if isinstance(title, PreparedTitle) else load_title(title)


def variant_pieces(title: PreparedTitle, choices: np.ndarray) -> list[tuple[Path, int, int]]:
    """(path, offset, size) of init then fragment i of A (choice 0) or B (choice 1) for every position."""
    if len(choices) != title.n_positions:
        raise ValueError(f"{len(choices)} choices for {title.n_positions} positions")
    pieces = [(title.init_path, 0, title.init_size)]
    for entry, choice in zip(title.fragments, choices):
        variant = "B" if choice else "A"
        ref = entry[variant.lower()]
        pieces.append((title.variant_path(variant), ref["offset"], ref["size"]))
    return pieces


class TagCopy(VirtualFile):
    """The copy issued to `tag`: `.size`, `.read(offset, length)`, `.iter_chunks()`, `.write_to(path)`."""

    def __init__(self, title: PreparedTitle | str | os.PathLike[str], tag: str):
        self.title = _as_title(title)
        self.tag = tag
        self.codeword = codeword(self.title.key, tag, self.title.n_positions)
        super().__init__(variant_pieces(self.title, self.codeword))


def variant_copy(title: PreparedTitle | str | os.PathLike[str], variant: str) -> VirtualFile:
    """The whole title in one variant (all A or all B), e.g. to measure its quality."""
    title = _as_title(title)
    choice = {"A": 0, "B": 1}[variant]
    return VirtualFile(variant_pieces(title, np.full(title.n_positions, choice, np.uint8)))


def write_copy(outdir: str | os.PathLike[str] | PreparedTitle, tag: str, out_path: str | os.PathLike[str]) -> int:
    """Write the tag's copy to out_path; return its size in bytes."""
    with TagCopy(outdir, tag) as copy:
        return copy.write_to(out_path)
