"""Pipelines: create, read, list, update, delete, and where a pipeline's inputs come from.

Every pipeline owns a root folder in the internal store (`pipelines/<id>/`, recorded as a folder
file the pipeline's `file` reference points at). A job or backtrace names its input relative to
that folder, or relative to the pipeline's `input_download_dir` when one is set, or as an absolute
URI; `resolve_input` decides which, and refuses names that would leave the folder.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from leaktrace.ids import new_id, now_ms
from leaktrace.store.db import Database
from leaktrace.store.errors import InvalidInput, NotFound
from leaktrace.store.listing import Page, Sort, fetch_page
from leaktrace.store.models import Backtrace, File, Job, Pipeline
from leaktrace.store.ownership import owned

DEFAULT_NAME = "Default Pipeline"
ONGOING = ("QUEUED", "PROCESSING")
# Where inputs and outputs may live outside the internal store (the reference's §2.4).
REMOTE_SCHEMES = ("s3", "sftp", "https", "http")
LOCAL_SCHEME = "file"
LOCAL_SCHEME = "file"  # folders the operator lists in LEAKTRACE_FETCH_LOCAL_DIRS

# Plain fields a caller may set; option groups merge key by key on update.
FIELDS = (
    "name",
    "description",
    "cancel_timeout",
    "default_object_timeout",
    "enable_backtrace_pings",
    "input_download_dir",
    "image_download_dir",
    "output_upload_dir",
    "image_upload_dir",
)
# Option groups and their keys: a group that is set shows every key (unset ones as null).
GROUPS: dict[str, tuple[str, ...]] = {
    "download_options": ("auto_convert_input", "https_certificate_check"),
    "upload_options": ("s3_allow_read", "s3_reduced_redundancy"),
    "store_options": ("mode",),
    "ping_urls": ("error", "warning", "started", "finished"),
}

SORT_COLUMNS: dict[str, ColumnElement[Any]] = {
    "id": Pipeline.id,
    "created_at": Pipeline.created_at,
    "updated_at": Pipeline.updated_at,
    "version": Pipeline.version,
    "name": Pipeline.name,
    "description": Pipeline.description,
    "cancel_timeout": Pipeline.cancel_timeout,
    "default_object_timeout": Pipeline.default_object_timeout,
    "enable_backtrace_pings": Pipeline.enable_backtrace_pings,
    "input_download_dir": Pipeline.input_download_dir,
    "output_upload_dir": Pipeline.output_upload_dir,
    "file.id": Pipeline.file_id,
    "user.id": Pipeline.user_id,
}


def folder_key(pipeline_id: str) -> str:
    """The storage key prefix of a pipeline's root folder."""
    return f"pipelines/{pipeline_id}/"


def add_pipeline(session: Session, *, user_id: str, name: str, is_default: bool = False, **fields: Any) -> Pipeline:
    """Add a pipeline and its root folder record to `session` (the caller commits)."""
    now = now_ms()
    pipeline = Pipeline(id=new_id(), user_id=user_id, name=name, is_default=is_default, created_at=now, updated_at=now)
    for key, value in fields.items():
        setattr(pipeline, key, value)
    pipeline.file_id = new_id()
    session.add(pipeline)
    session.flush()  # the folder references the pipeline row
    session.add(
        File(
            id=pipeline.file_id,
            user_id=user_id,
            pipeline_id=pipeline.id,
            storage="intern",
            storage_key=folder_key(pipeline.id),
            name=pipeline.id,
            type="folder",
            parents=[],
            created_at=now,
            updated_at=now,
        )
    )
    return pipeline


def _group(name: str, values: dict[str, Any]) -> dict[str, Any]:
    return {key: values.get(key) for key in GROUPS[name]}


def create(db: Database, *, user_id: str, values: dict[str, Any]) -> Pipeline:
    """Store a new pipeline; `values` holds the validated fields of `POST /pipelines`."""
    _check_locations(values)
    values = {key: _group(key, value) if key in GROUPS and value is not None else value for key, value in values.items()}
    with db.write() as session:
        return add_pipeline(session, user_id=user_id, **values)


def get(db: Database, *, user_id: str, pipeline_id: str) -> Pipeline:
    """One of the account's pipelines; NotFound otherwise."""
    with db.read() as session:
        pipeline = owned(session, Pipeline, pipeline_id, user_id=user_id)
    if pipeline is None:
        raise NotFound("Pipeline does not exist")
    return pipeline


def list_pipelines(db: Database, *, user_id: str, sort: Sort, start: int, limit: int | None) -> Page:
    """The account's pipelines, one page in `sort` order."""
    with db.read() as session:
        return fetch_page(
            session,
            select(Pipeline).where(Pipeline.user_id == user_id),
            id_column=Pipeline.id,
            sort_columns=SORT_COLUMNS,
            sort=sort,
            start=start,
            limit=limit,
        )


def update(db: Database, *, user_id: str, pipeline_id: str, changes: dict[str, Any]) -> Pipeline:
    """Apply a partial update: sent keys change, null resets, option groups merge key by key."""
    if "name" in changes and changes["name"] is None:
        raise InvalidInput("name cannot be reset")
    _check_locations(changes)
    with db.write() as session:
        pipeline = owned(session, Pipeline, pipeline_id, user_id=user_id)
        if pipeline is None:
            raise NotFound("Pipeline does not exist")
        for key in FIELDS:
            if key in changes:
                setattr(pipeline, key, changes[key])
        for key in GROUPS:
            if key in changes:
                group = changes[key]
                setattr(pipeline, key, None if group is None else _group(key, {**(getattr(pipeline, key) or {}), **group}))
        pipeline.version += 1
        pipeline.updated_at = now_ms()
    return pipeline


def delete(db: Database, *, user_id: str, pipeline_id: str) -> None:
    """Delete a pipeline and its root folder, unless it is the default one or pending work uses it."""
    with db.write() as session:
        pipeline = owned(session, Pipeline, pipeline_id, user_id=user_id)
        if pipeline is None:
            raise NotFound("Pipeline does not exist")
        if pipeline.is_default:
            raise InvalidInput("the Default Pipeline cannot be deleted")
        busy = session.scalar(
            select(Job.id).where(Job.pipeline_id == pipeline.id, Job.status.in_(ONGOING)).limit(1)
        )
        if busy is not None:
            raise InvalidInput(f"job {busy} still uses this pipeline")
        tracing = session.scalar(
            select(Backtrace.id).where(Backtrace.pipeline_id == pipeline.id, Backtrace.status.in_(ONGOING)).limit(1)
        )
        if tracing is not None:
            raise InvalidInput(f"backtrace {tracing} still uses this pipeline")
        folder = session.get(File, pipeline.file_id) if pipeline.file_id else None
        if folder is not None and folder.user_id == user_id:
            session.delete(folder)
        session.delete(pipeline)


# ---- input locations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InputLocation:
    """Where an input lives: a key in the internal store, or a remote URI."""

    storage: str  # "intern" | "extern"
    key: str | None  # storage key of an internal input
    uri: str | None  # URI of a remote input


def _check_locations(values: dict[str, Any]) -> None:
    for key in ("input_download_dir", "image_download_dir", "output_upload_dir", "image_upload_dir"):
        if values.get(key) is not None:
            check_remote_uri(key, values[key])


def check_remote_uri(name: str, uri: str) -> None:
    """Refuse anything but an s3/sftp/http(s) URI with a host (no local files, no bare paths)."""
    parts = urlsplit(uri)
    if parts.scheme.lower() not in REMOTE_SCHEMES or not parts.netloc:
        raise InvalidInput(f"{name} must be a URI with a host and one of the schemes {', '.join(REMOTE_SCHEMES)}")


def check_local_uri(name: str, uri: str, *, local_dirs: tuple[Path, ...]) -> None:
    """Refuse a file:// URI outside the folders the operator allows (`local_dirs`, absolute).

    A lexical check (no `..`, inside a listed folder); the fetch checks again on the resolved
    path, so a symbolic link cannot lead out either.
    """
    parts = urlsplit(uri)
    path = unquote(parts.path)
    inside = any(PurePosixPath(path).is_relative_to(folder) for folder in local_dirs)
    if parts.netloc or ".." in path.split("/") or not path.startswith("/") or not inside:
        raise InvalidInput(f"{name}: file:// may only name a file inside the folders the operator allows")


def relative_input_path(input_name: str, *, label: str = "input_name") -> str:
    """The normalised relative path of an input name, or InvalidInput when it could leave its folder.

    Refused: absolute paths, backslashes, NUL and control characters, `..` segments, also when
    percent-encoded (`%2e%2e`), since remote servers decode them. `label` names the parameter in
    the error messages (`input_name`, `object_key`).
    """
    if any(ord(c) < 32 for c in input_name):
        raise InvalidInput(f"{label} contains control characters")
    decoded = unquote(unquote(input_name))
    for candidate in (input_name, decoded):
        if "\\" in candidate:
            raise InvalidInput(f"{label} must use / as separator")
        if candidate.startswith(("/", "~")) or (len(candidate) > 1 and candidate[1] == ":"):
            raise InvalidInput(f"{label} must be relative to the pipeline's folder")
        if any(segment == ".." for segment in candidate.split("/")):
            raise InvalidInput(f"{label} must not leave the pipeline's folder (..)")
    path = posixpath.normpath(input_name)
    if path in (".", "") or input_name.endswith("/"):
        raise InvalidInput(f"{label} must name a file")
    return path


def resolve_input(pipeline: Pipeline, input_name: str, *, local_dirs: tuple[Path, ...] = ()) -> InputLocation:
    """Where `input_name` of a job or backtrace on `pipeline` lives (`local_dirs`: where file://
    may point, as the operator configured)."""
    if "://" in input_name:
        if urlsplit(input_name).scheme.lower() == LOCAL_SCHEME and local_dirs:
            check_local_uri("input_name", input_name, local_dirs=local_dirs)
        else:
            check_remote_uri("input_name", input_name)
        return InputLocation(storage="extern", key=None, uri=input_name)
    path = relative_input_path(input_name)
    if pipeline.input_download_dir:
        base = pipeline.input_download_dir.rstrip("/") + "/"
        return InputLocation(storage="extern", key=None, uri=base + path)
    return InputLocation(storage="intern", key=folder_key(pipeline.id) + path, uri=None)
