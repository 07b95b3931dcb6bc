"""Files: read, list with filters, and delete (the record and its stored bytes).

Stored bytes live under the blob root (`LEAKTRACE_STORAGE_URL`, default `<data dir>/media`) at the
file's `storage_key`. External files (`storage: "extern"`, e.g. inputs fetched from a URI) have no
bytes of ours, so deleting them only removes the record. Folders are the pipelines' roots and go
with their pipeline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, select

from leaktrace.store.db import Database
from leaktrace.store.errors import InvalidInput, NotFound
from leaktrace.store.listing import Page, Sort, fetch_page
from leaktrace.store.models import File
from leaktrace.store.ownership import owned

log = logging.getLogger(__name__)

TYPES = ("file", "folder", "archive")

SORT_COLUMNS: dict[str, ColumnElement[Any]] = {
    "id": File.id,
    "created_at": File.created_at,
    "updated_at": File.updated_at,
    "version": File.version,
    "name": File.name,
    "title": File.title,
    "type": File.type,
    "subtype": File.subtype,
    "storage": File.storage,
    "mime_type": File.mime_type,
    "size": File.size,
    "size_on_disk": File.size_on_disk,
    "duration": File.duration,
    "user_data": File.user_data,
    "finished_at": File.finished_at,
    "expires_at": File.expires_at,
    "autograph": File.autograph,
    "job.id": File.job_id,
    "pipeline.id": File.pipeline_id,
    "application.id": File.application_id,
    "user.id": File.user_id,
}


@dataclass(frozen=True)
class FileFilters:
    """The list filters of `GET /files/`; None means "do not filter"."""

    types: tuple[str, ...] | None = None
    pipeline_id: str | None = None
    job_id: str | None = None
    user_data: str | None = None


def parse_types(raw: str | None) -> tuple[str, ...] | None:
    """The `type` filter: a comma-separated list of file, folder, archive."""
    if raw is None:
        return None
    types = tuple(part.strip() for part in raw.split(",") if part.strip())
    unknown = [t for t in types if t not in TYPES]
    if unknown or not types:
        raise InvalidInput(f"type must be a comma-separated list of {', '.join(TYPES)}")
    return types


def get(db: Database, *, user_id: str, file_id: str) -> File:
    """One of the account's files; NotFound otherwise."""
    with db.read() as session:
        file = owned(session, File, file_id, user_id=user_id)
    if file is None:
        raise NotFound("Requested file does not exist")
    return file


def _filtered(user_id: str, filters: FileFilters) -> Select[Any]:
    stmt = select(File).where(File.user_id == user_id)
    if filters.types is not None:
        stmt = stmt.where(File.type.in_(filters.types))
    if filters.pipeline_id is not None:
        stmt = stmt.where(File.pipeline_id == filters.pipeline_id)
    if filters.job_id is not None:
        stmt = stmt.where(File.job_id == filters.job_id)
    if filters.user_data is not None:
        stmt = stmt.where(File.user_data == filters.user_data)
    return stmt


def list_files(db: Database, *, user_id: str, filters: FileFilters, sort: Sort, start: int, limit: int | None) -> Page:
    """The account's files matching `filters`, one page in `sort` order."""
    with db.read() as session:
        return fetch_page(
            session, _filtered(user_id, filters), id_column=File.id, sort_columns=SORT_COLUMNS, sort=sort, start=start, limit=limit
        )


def blob_path(blob_root: Path, storage_key: str) -> Path:
    """The local path of a stored object, refusing keys that point outside the blob root."""
    root = blob_root.resolve()
    path = (root / storage_key).resolve()
    if not path.is_relative_to(root) or path == root:
        raise InvalidInput("the file's storage key points outside the store")
    return path


def delete_file(db: Database, *, user_id: str, file_id: str, blob_root: Path | None) -> None:
    """Delete a file or archive record and its stored bytes.

    `blob_root` is the local blob folder, or None when blobs are not on a local disk (then only the
    record goes, and the bytes are left for the storage's own expiry).
    """
    with db.write() as session:
        file = owned(session, File, file_id, user_id=user_id)
        if file is None:
            raise NotFound("Requested file does not exist")
        if file.type == "folder":
            raise InvalidInput("a pipeline's folder is deleted with its pipeline")
        path = None
        if file.storage == "intern" and file.storage_key and blob_root is not None:
            path = blob_path(blob_root, file.storage_key)
        session.delete(file)
        # Bytes go inside the transaction: if removing them fails, the record is kept.
        if path is not None and path.is_file():
            path.unlink()
