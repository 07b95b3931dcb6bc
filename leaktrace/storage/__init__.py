"""Blob storage: the one place that reads and writes stored bytes.

`open_storage(url)` gives the `Storage` a `LEAKTRACE_STORAGE_URL` selects; everything else in the
service (routes, flows, tasks) goes through that interface and never builds paths under the data
dir. `scratch.workspace` provides the local working folders jobs and backtraces need.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from leaktrace.storage.base import DEFAULT_CHUNK_BYTES, BlobInfo, BlobNotFound, InvalidKey, Storage, check_key, check_prefix
from leaktrace.storage.local import LocalStorage

__all__ = [
    "DEFAULT_CHUNK_BYTES", "BlobInfo", "BlobNotFound", "InvalidKey", "LocalStorage", "Storage",
    "check_key", "check_prefix", "open_storage",
]  # fmt: skip


def open_storage(url: str) -> Storage:
    """The storage `url` names: `file:///absolute/path` is a local folder; nothing else yet.

    The error names only the scheme, since URLs of object stores can carry credentials.
    """
    parts = urlsplit(url)
    if parts.scheme != "file":
        scheme = f"{parts.scheme}://" if parts.scheme else "a bare path"
        raise ValueError(f"LEAKTRACE_STORAGE_URL must be file:///absolute/path (the only backend so far), not {scheme}")
    if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
        raise ValueError("LEAKTRACE_STORAGE_URL must be file:///absolute/path, without a host, query or fragment")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise ValueError("LEAKTRACE_STORAGE_URL must name an absolute path (file:///…)")
    return LocalStorage(Path(path))
