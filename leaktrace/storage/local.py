"""Blobs in a local folder: one file per key, written through a temporary file and a rename.

Temporary files live in `<root>/.incoming/` (a name no key may start with), on the same file system
as the blobs, so `os.replace` moves a finished one into place atomically. Every path is resolved
(symbolic links included) and must stay inside the root. Folders are created 0700 and files 0600:
blobs are customers' media, readable by the service's user only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from leaktrace.storage.base import DEFAULT_CHUNK_BYTES, BlobInfo, BlobNotFound, InvalidKey, check_key, check_prefix

FOLDER_MODE = 0o700
FILE_MODE = 0o600
INCOMING = ".incoming"  # temporary files of writes in progress


class LocalStorage:
    """The `Storage` of a local folder (`file:///abs/path`)."""

    def __init__(self, root: Path) -> None:
        if not root.is_absolute():
            raise ValueError(f"the storage root must be an absolute path, not {str(root)!r}")
        root.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        self.root = root.resolve()
        self._incoming = self.root / INCOMING
        self._incoming.mkdir(mode=FOLDER_MODE, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    # ---- paths -----------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        """The resolved path of `key`, refusing anything outside the root or in the temporary area."""
        check_key(key)
        if key.split("/", 1)[0] == INCOMING:
            raise InvalidKey(f"{INCOMING} is reserved for writes in progress")
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root or path.is_relative_to(self._incoming):
            raise InvalidKey(f"storage key {key!r} leads outside the store")
        return path

    def _folder(self, prefix: str) -> Path:
        return self._path(check_prefix(prefix))

    def _make_parents(self, path: Path) -> None:
        """Create the folders above `path` one by one, each 0700 (mkdir's `parents` ignores modes)."""
        current = self.root
        for part in path.relative_to(self.root).parts[:-1]:
            current = current / part
            try:
                current.mkdir(mode=FOLDER_MODE)
            except FileExistsError:
                continue
            os.chmod(current, FOLDER_MODE)  # mkdir's mode is filtered through the umask

    def _place(self, temporary: Path, key: str) -> None:
        """Move a finished temporary file to `key` (the atomic step of every write)."""
        target = self._path(key)
        os.chmod(temporary, FILE_MODE)
        # A concurrent delete_prefix may remove a folder between mkdir and rename: create again once.
        for attempt in range(2):
            self._make_parents(target)
            # Folders made above may be symbolic links planted since the first check: check again.
            if self._path(key) != target:
                raise InvalidKey(f"storage key {key!r} leads outside the store")
            try:
                os.replace(temporary, target)
                return
            except FileNotFoundError:
                if attempt or not temporary.exists():
                    raise

    # ---- writing ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        """A file to stream a blob into; it appears at `key` only if the block exits cleanly."""
        self._path(key)  # refuse a bad key before anything is written
        fd, name = tempfile.mkstemp(dir=self._incoming, prefix="w-")
        temporary = Path(name)
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            self._place(temporary, key)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def put_file(self, key: str, path: Path) -> None:
        """Move a finished local file to `key`; across file systems, copy it and remove the source."""
        self._path(key)
        if path.is_symlink() or not path.is_file():
            raise ValueError(f"{path} is not a regular file")
        fd, name = tempfile.mkstemp(dir=self._incoming, prefix="p-")
        os.close(fd)
        temporary = Path(name)
        try:
            try:
                os.replace(path, temporary)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                shutil.copyfile(path, temporary)
                path.unlink()
            self._place(temporary, key)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def put_tree(self, prefix: str, folder: Path) -> None:
        """Store every regular file below `folder` under `prefix` (symbolic links are refused)."""
        base = check_prefix(prefix)
        files = []
        for directory, subfolders, names in os.walk(folder):
            subfolders.sort()
            for name in sorted(names):
                path = Path(directory) / name
                if path.is_symlink() or not path.is_file():
                    raise ValueError(f"{path} is not a regular file")
                files.append(path)
            for name in subfolders:
                if (Path(directory) / name).is_symlink():
                    raise ValueError(f"{Path(directory) / name} is a symbolic link")
        for path in files:
            self.put_file(f"{base}/{path.relative_to(folder).as_posix()}", path)

    # ---- reading ---------------------------------------------------------------------------------

    def read_range(
        self, key: str, start: int = 0, end: int | None = None, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES
    ) -> Iterator[bytes]:
        """Bytes `[start, end)` of a blob in chunks of at most `chunk_bytes`."""
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid byte range [{start}, {end})")
        if chunk_bytes <= 0:
            raise ValueError("chunk_bytes must be positive")
        try:
            handle = open(self._path(key), "rb")  # noqa: SIM115 - closed by the generator below
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(key) from None
        return _chunks(handle, start=start, end=end, chunk_bytes=chunk_bytes)

    def stat(self, key: str) -> BlobInfo | None:
        """Size and modification time (ms) of a blob, or None."""
        try:
            info = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return BlobInfo(size=info.st_size, modified_ms=info.st_mtime_ns // 1_000_000)

    def exists(self, key: str) -> bool:
        """True when a blob is stored at `key`."""
        return self._path(key).is_file()

    def keys(self, prefix: str) -> Iterator[str]:
        """Every key under `prefix`, sorted; symbolic links are not blobs and are skipped."""
        folder = self._folder(prefix)
        if not folder.is_dir():
            return iter(())
        found = []
        for directory, subfolders, names in os.walk(folder):
            for name in names:
                path = Path(directory) / name
                if not path.is_symlink() and path.is_file():
                    found.append(path.relative_to(self.root).as_posix())
        return iter(sorted(found))

    def local_path(self, key: str) -> Path | None:
        """The blob's own file, to read in place."""
        path = self._path(key)
        if not path.is_file():
            raise BlobNotFound(key)
        return path

    def download(self, key: str, dest: Path) -> None:
        """Copy a blob to `dest`."""
        source = self._path(key)
        if not source.is_file():
            raise BlobNotFound(key)
        shutil.copyfile(source, dest)

    def download_tree(self, prefix: str, dest: Path) -> None:
        """Copy every blob under `prefix` into `dest`, keeping relative paths."""
        base = check_prefix(prefix)
        for key in self.keys(base):
            target = dest / key[len(base) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            self.download(key, target)

    # ---- deleting --------------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        """Remove a blob; a missing one is fine."""
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            path.unlink()

    def delete_prefix(self, prefix: str) -> int:
        """Remove the folder `prefix` names with every blob in it; returns how many blobs went."""
        folder = self._folder(prefix)
        if not folder.is_dir():
            return 0
        count = sum(1 for _ in self.keys(prefix))
        shutil.rmtree(folder, ignore_errors=True)
        return count

    def discard_incomplete(self, *, older_than_s: float) -> int:
        """Remove temporary files older than `older_than_s` (left by killed writers)."""
        cutoff = time.time() - older_than_s
        removed = 0
        for path in self._incoming.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed


def _chunks(handle: BinaryIO, *, start: int, end: int | None, chunk_bytes: int) -> Iterator[bytes]:
    with handle:
        handle.seek(start)
        remaining = None if end is None else end - start
        while remaining is None or remaining > 0:
            block = handle.read(chunk_bytes if remaining is None else min(chunk_bytes, remaining))
            if not block:
                return
            if remaining is not None:
                remaining -= len(block)
            yield block
