"""Jobs: submit, read, list with filters, delete (running them is `store.job_runs`).

A job's outputs live in one JSON column (each entry holds the preset id, the produced file ids and
the per-output settings) because they are only ever read and written whole; everything a list
filter or sort needs is a real column.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, Select, delete, or_, select

from leaktrace.ids import is_id, new_id, now_ms
from leaktrace.store.db import Database
from leaktrace.store.errors import InvalidInput, NotFound
from leaktrace.store.listing import Page, Sort, fetch_page
from leaktrace.store.models import File, Job, Pipeline, Preset
from leaktrace.store.ownership import owned
from leaktrace.store.pipelines import relative_input_path, resolve_input

STATUSES = ("QUEUED", "PROCESSING", "SUCCESS", "FAILURE")
RECENTLY_FINISHED_MS = 15 * 60 * 1000  # `inprogress` also lists jobs finished this recently

SORT_COLUMNS: dict[str, ColumnElement[Any]] = {
    "id": Job.id,
    "created_at": Job.created_at,
    "updated_at": Job.updated_at,
    "finished_at": Job.finished_at,
    "status": Job.status,
    "percentage_completed": Job.percentage_completed,
    "version": Job.version,
    "user_data": Job.user_data,
    "title": Job.title,
    "unique_custom_key": Job.unique_custom_key,
    "output_prefix": Job.output_prefix,
    "error_code": Job.error_code,
    "error_msg": Job.error_msg,
    "pipeline.id": Job.pipeline_id,
    "application.id": Job.application_id,
    "user.id": Job.user_id,
    "input.input_name": Job.input_name,
    "input.file.id": Job.input_file_id,
    "input.file.name": Job.input_file_name,
}


@dataclass(frozen=True)
class JobFilters:
    """The list filters of `GET /jobs/`; None means "do not filter"."""

    user_data: str | None = None
    inprogress: bool | None = None
    status: str | None = None
    autograph: bool | None = None
    pipeline_id: str | None = None
    input_file_name: str | None = None
    from_date: int | None = None
    to_date: int | None = None


def input_file_name(input_name: str) -> str:
    """The last path segment of an input name or URI (`…/ED_HD.avi` -> `ED_HD.avi`)."""
    path = urlsplit(input_name).path if "://" in input_name else input_name
    return posixpath.basename(path.rstrip("/")) or input_name


def _expand(template: str, *, job_id: str, input_stem: str) -> str:
    return template.replace("{job_id}", job_id).replace("{input_name}", input_stem)


def create(
    db: Database,
    *,
    user_id: str,
    application_id: str | None,
    pipeline_id: str,
    input_name: str,
    input_options: dict[str, Any],
    outputs: list[dict[str, Any]],
    autograph: dict[str, Any] | None,
    user_data: str | None,
    output_prefix: str | None,
    playlists: list[Any] | None,
    title: str | None,
    unique_custom_key: str | None,
    submitted_keys: list[str],
    local_dirs: tuple[Path, ...] = (),
) -> Job:
    """Validate references and store a QUEUED job with a file record for its input."""
    with db.write() as session:
        pipeline = owned(session, Pipeline, pipeline_id, user_id=user_id)
        if pipeline is None:
            raise InvalidInput(f"pipeline {pipeline_id} does not exist")
        for index, output in enumerate(outputs):
            preset_id = output["preset_id"]
            preset = session.get(Preset, preset_id) if is_id(preset_id) else None
            if preset is None or (preset.type != "system" and preset.user_id != user_id):
                raise InvalidInput(f"outputs[{index}].preset: preset {preset_id} does not exist")
        if unique_custom_key is not None:
            taken = session.scalar(
                select(Job.id).where(Job.user_id == user_id, Job.unique_custom_key == unique_custom_key).limit(1)
            )
            if taken:
                raise InvalidInput(f"unique_custom_key {unique_custom_key!r} is already used by job {taken}")

        job_id = new_id()
        file_name = input_file_name(input_name)
        stem = posixpath.splitext(file_name)[0]
        now = now_ms()
        job = Job(
            id=job_id,
            user_id=user_id,
            application_id=application_id,
            pipeline_id=pipeline.id,
            user_data=user_data,
            title=title,
            unique_custom_key=unique_custom_key,
            submitted_keys=submitted_keys,
            input_name=input_name,
            input_options=input_options,
            input_file_id=new_id(),
            input_file_name=file_name,
            autograph=autograph,
            autograph_enabled=autograph is not None,
            output_prefix=_expand(output_prefix if output_prefix is not None else "{job_id}/", job_id=job_id, input_stem=stem),
            playlists=playlists,
            outputs=[
                {
                    "preset_id": output["preset_id"],
                    "output_name": _expand(output.get("output_name") or "{input_name}", job_id=job_id, input_stem=stem),
                    "file_id": None,
                    "percentage_completed": 0,
                    "thumbnail_zip_file_id": None,
                    "thumbnails": output.get("thumbnails"),
                    "logos": output.get("logos"),
                    "settings": output.get("settings"),
                }
                for output in outputs
            ],
            status="QUEUED",
            percentage_completed=0,
            created_at=now,
            updated_at=now,
        )
        for index, output in enumerate(job.outputs):
            # Outputs are stored in the pipeline's folder, at output_prefix + output_name.
            name = job.output_prefix + output["output_name"].replace("{resolution}", "720p")
            relative_input_path(name, label=f"outputs[{index}]: output_prefix + output_name")
        session.add(job)
        session.flush()
        # refuses names leaving the pipeline's folder, and file:// outside `local_dirs`
        location = resolve_input(pipeline, input_name, local_dirs=local_dirs)
        session.add(
            File(
                id=job.input_file_id,
                user_id=user_id,
                application_id=application_id,
                pipeline_id=pipeline.id,
                job_id=job_id,
                storage=location.storage,
                storage_key=location.key,
                name=file_name,
                type="file",
                created_at=now,
                updated_at=now,
            )
        )
    return job


def get(db: Database, *, user_id: str, job_id: str) -> Job:
    """One of the account's jobs; NotFound otherwise."""
    with db.read() as session:
        job = owned(session, Job, job_id, user_id=user_id)
    if job is None:
        raise NotFound("Job does not exist")
    return job


def _filtered(user_id: str, filters: JobFilters, now: int) -> Select[Any]:
    stmt = select(Job.__table__).where(Job.user_id == user_id)
    if filters.user_data is not None:
        stmt = stmt.where(Job.user_data == filters.user_data)
    if filters.status is not None:
        stmt = stmt.where(Job.status == filters.status)
    if filters.inprogress is True:
        stmt = stmt.where(
            or_(Job.status.in_(("QUEUED", "PROCESSING")), Job.finished_at >= now - RECENTLY_FINISHED_MS)
        )
    elif filters.inprogress is False:
        stmt = stmt.where(
            Job.status.not_in(("QUEUED", "PROCESSING")),
            or_(Job.finished_at.is_(None), Job.finished_at < now - RECENTLY_FINISHED_MS),
        )
    if filters.autograph is not None:
        stmt = stmt.where(Job.autograph_enabled.is_(filters.autograph))
    if filters.pipeline_id is not None:
        stmt = stmt.where(Job.pipeline_id == filters.pipeline_id)
    if filters.input_file_name is not None:
        stmt = stmt.where(Job.input_file_name.icontains(filters.input_file_name, autoescape=True))
    if filters.from_date is not None:
        stmt = stmt.where(Job.created_at >= filters.from_date)
    if filters.to_date is not None:
        stmt = stmt.where(Job.created_at <= filters.to_date)
    return stmt


def list_jobs(
    db: Database, *, user_id: str, filters: JobFilters, sort: Sort, start: int, limit: int | None
) -> Page:
    """The account's jobs matching `filters`, one page in `sort` order."""
    with db.read() as session:
        return fetch_page(
            session,
            _filtered(user_id, filters, now_ms()),
            id_column=Job.id,
            sort_columns=SORT_COLUMNS,
            sort=sort,
            start=start,
            limit=limit,
        )


def delete_job(db: Database, *, user_id: str, job_id: str) -> list[str]:
    """Cancel a queued or running job, or delete a finished one; either way it is removed.

    The job's file records go with it. Returns the storage keys of the files the job produced
    (a key ending in "/" is a prefix: a prepared AutoGraph title), for the caller to remove from
    storage; the input is not the job's to remove. A worker running the job loses its lease with
    the row, stops, and removes what it had stored.
    """
    with db.write() as session:
        job = owned(session, Job, job_id, user_id=user_id)
        if job is None:
            raise NotFound("Job does not exist")
        produced = session.scalars(
            select(File.storage_key).where(File.job_id == job.id, File.id != job.input_file_id, File.storage == "intern")
        ).all()
        session.execute(delete(File).where(File.job_id == job.id))
        session.delete(job)
    return [key for key in produced if key]


def with_pipeline(db: Database, *, job_id: str) -> tuple[Job, Pipeline] | None:
    """A job and its pipeline, whoever owns them (for the worker's own use); None if either is gone."""
    with db.read() as session:
        job = session.get(Job, job_id)
        pipeline = session.get(Pipeline, job.pipeline_id) if job is not None and job.pipeline_id else None
    return (job, pipeline) if job is not None and pipeline is not None else None
