"""Files: read, list with filters, and delete records.

Stored bytes live in blob storage at the file's `storage_key`; removing them is the caller's part
(`flows.files.delete_file`), since services do no file I/O. External files (`storage: "extern"`,
e.g. inputs fetched from a URI) have no bytes of ours. Folders are the pipelines' roots and go
with their pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_, select

from leaktrace.store.db import Database
from leaktrace.store.errors import InvalidInput, NotFound
from leaktrace.store.listing import Page, Sort, fetch_page
from leaktrace.store.models import File
from leaktrace.store.ownership import owned
from leaktrace.store.pipelines import folder_key

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


def get_by_object_key(db: Database, *, user_id: str, pipeline_id: str, object_key: str) -> File:
    """The account's file stored at `object_key` in a pipeline's folder (a job output's
    `output_prefix + name`, or an upload's key); NotFound otherwise.

    AutoGraph outputs live under their own storage prefix, so they are found by their pipeline and
    name (the last path segment of the key); the newest wins when a name was produced twice.
    """
    storage_key = folder_key(pipeline_id) + object_key
    name = object_key.rsplit("/", 1)[-1]
    with db.read() as session:
        file = session.scalars(
            select(File)
            .where(File.user_id == user_id, File.pipeline_id == pipeline_id)
            .where(or_(File.storage_key == storage_key, and_(File.autograph.is_(True), File.name == name)))
            .order_by(File.storage_key != storage_key, File.created_at.desc(), File.id)
        ).first()
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


def delete_file(db: Database, *, user_id: str, file_id: str) -> str | None:
    """Delete a file or archive record; returns the storage key of its bytes, if we hold any.

    Only the row goes here (its upload, if any, goes with it); the caller removes the bytes
    through storage once this transaction has committed.
    """
    with db.write() as session:
        file = owned(session, File, file_id, user_id=user_id)
        if file is None:
            raise NotFound("Requested file does not exist")
        if file.type == "folder":
            raise InvalidInput("a pipeline's folder is deleted with its pipeline")
        key = file.storage_key if file.storage == "intern" else None
        session.delete(file)
    return key


def autograph_outputs(db: Database, *, user_id: str, job_id: str) -> list[File]:
    """The account's AutoGraph outputs of one job (its renditions), oldest first."""
    with db.read() as session:
        stmt = _filtered(user_id, FileFilters(job_id=job_id)).where(File.autograph.is_(True))
        return list(session.scalars(stmt.order_by(File.created_at, File.id)))
