"""Running jobs: claiming a queued job under a lease, renewing it, and recording how it ended.

A worker claims a job by taking its lease (`claim`), renews the lease while it works (`renew`,
which also records progress), and ends it with `succeed` or `fail`. Every write after the claim
checks that the lease is still the worker's, so a worker that lost its lease (it stalled past the
lease, and the job was given to another worker) or whose job was deleted cannot overwrite the row:
its writes return False and it stops. Rows only: the orchestration lives in `flows/imports.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from leaktrace.ids import now_ms
from leaktrace.store.db import Database
from leaktrace.store.models import File, Job, Pipeline, Preset
from leaktrace.store.pipelines import folder_key

RUNNING = "PROCESSING"


@dataclass(frozen=True)
class JobRun:
    """What a worker needs to run a job, read once when it claims the job."""

    job_id: str
    worker: str
    attempt: int
    user_id: str
    application_id: str | None
    pipeline_id: str
    pipeline: dict[str, Any]  # the pipeline's fields the flow reads (dirs, options, ping_urls)
    pipeline_folder: str  # storage key prefix of the pipeline's root folder
    input_name: str
    input_options: dict[str, Any]
    input_file_id: str | None
    autograph: dict[str, Any] | None
    output_prefix: str
    outputs: list[dict[str, Any]]
    presets: dict[str, dict[str, Any]]  # preset id -> {"target_format", "settings"}


@dataclass(frozen=True)
class ProducedFile:
    """A file record a job produced: an output, a thumbnail, a folder of thumbnails, an archive."""

    id: str
    name: str
    storage_key: str | None
    type: str = "file"  # file | folder | archive
    subtype: str | None = None
    autograph: bool | None = None
    media: dict[str, Any] = field(default_factory=dict)  # File columns from probing
    parents: list[dict[str, Any]] | None = None
    elements: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class OutputResult:
    """One finished `outputs[]` entry: its file, its thumbnails (per `thumbnails[]`) and their zip."""

    file: ProducedFile
    thumbnail_folders: list[ProducedFile] = field(default_factory=list)
    thumbnails: list[ProducedFile] = field(default_factory=list)
    thumbnail_zip: ProducedFile | None = None

    def files(self) -> list[ProducedFile]:
        extra = [self.thumbnail_zip] if self.thumbnail_zip else []
        return [self.file, *self.thumbnail_folders, *self.thumbnails, *extra]


_PIPELINE_FIELDS = (
    "input_download_dir", "image_download_dir", "download_options", "ping_urls", "enable_backtrace_pings",
    "cancel_timeout",
)  # fmt: skip


def claim(db: Database, *, job_id: str, worker: str, lease_s: float) -> JobRun | None:
    """Take the lease of a queued job and mark it PROCESSING; None when there is nothing to run.

    Nothing to run: the job was deleted, has ended, or another worker holds a live lease on it
    (the queue delivered its id twice). Each claim counts one attempt and resets the progress.
    """
    now = now_ms()
    with db.write() as session:
        job = session.get(Job, job_id)
        if job is None or job.status not in ("QUEUED", RUNNING):
            return None
        if job.status == RUNNING and (job.lease_expires_at or 0) > now:
            return None
        pipeline = session.get(Pipeline, job.pipeline_id) if job.pipeline_id else None
        if pipeline is None:
            return None
        job.status = RUNNING
        job.lease_owner = worker
        job.lease_expires_at = now + int(lease_s * 1000)
        job.attempts = (job.attempts or 0) + 1
        job.percentage_completed = 0
        job.outputs = [{**output, "percentage_completed": 0} for output in job.outputs]
        job.updated_at = now
        preset_ids = {output["preset_id"] for output in job.outputs}
        presets = {
            preset.id: {"target_format": preset.target_format, "settings": preset.settings or {}}
            for preset in session.scalars(select(Preset).where(Preset.id.in_(preset_ids)))
        }
        return JobRun(
            job_id=job.id,
            worker=worker,
            attempt=job.attempts,
            user_id=job.user_id,
            application_id=job.application_id,
            pipeline_id=pipeline.id,
            pipeline={name: getattr(pipeline, name) for name in _PIPELINE_FIELDS},
            pipeline_folder=folder_key(pipeline.id),
            input_name=job.input_name,
            input_options=dict(job.input_options or {}),
            input_file_id=job.input_file_id,
            autograph=job.autograph,
            output_prefix=job.output_prefix or "",
            outputs=[dict(output) for output in job.outputs],
            presets=presets,
        )


def _ours(job_id: str, worker: str) -> Any:
    return (Job.id == job_id) & (Job.status == RUNNING) & (Job.lease_owner == worker)


def renew(
    db: Database, *, job_id: str, worker: str, lease_s: float, percentage: int | None = None,
    output_percentages: list[int] | None = None,
) -> bool:
    """Extend the worker's lease and record progress; False when the job is no longer the worker's."""
    now = now_ms()
    with db.write() as session:
        job = session.scalar(select(Job).where(_ours(job_id, worker)))
        if job is None:
            return False
        job.lease_expires_at = now + int(lease_s * 1000)
        if percentage is not None and percentage != job.percentage_completed:
            job.percentage_completed = percentage
            job.updated_at = now
        if output_percentages is not None:
            current = [output.get("percentage_completed", 0) for output in job.outputs]
            if current != output_percentages:
                job.outputs = [
                    {**output, "percentage_completed": pct} for output, pct in zip(job.outputs, output_percentages)
                ]
                job.updated_at = now
    return True


def _file_row(run: JobRun, produced: ProducedFile, now: int) -> File:
    media = dict(produced.media)
    probed_subtype = media.pop("subtype", None)
    return File(
        id=produced.id,
        user_id=run.user_id,
        application_id=run.application_id,
        pipeline_id=run.pipeline_id,
        job_id=run.job_id,
        storage="intern",
        storage_key=produced.storage_key,
        name=produced.name,
        type=produced.type,
        subtype=produced.subtype or probed_subtype,
        autograph=produced.autograph,
        parents=produced.parents,
        elements=produced.elements,
        finished_at=now,
        created_at=now,
        updated_at=now,
        **media,
    )


def succeed(db: Database, *, run: JobRun, input_media: dict[str, Any], results: list[OutputResult]) -> bool:
    """Record the produced files and mark the job SUCCESS, in one transaction.

    False (and nothing written) when the job is no longer the worker's: the caller then removes
    the blobs it stored, so a deleted or re-run job never gains files from a stale worker.
    """
    now = now_ms()
    with db.write() as session:
        job = session.scalar(select(Job).where(_ours(run.job_id, run.worker)))
        if job is None:
            return False
        if run.input_file_id and (source := session.get(File, run.input_file_id)) is not None:
            for name, value in input_media.items():
                setattr(source, name, value)
            source.finished_at = now
            source.updated_at = now
        outputs = []
        for output, result in zip(job.outputs, results):
            for produced in result.files():
                session.add(_file_row(run, produced, now))
            thumbnails = output.get("thumbnails")
            if thumbnails is not None:
                thumbnails = [
                    {**entry, "file_id": folder.id} for entry, folder in zip(thumbnails, result.thumbnail_folders)
                ]
            outputs.append({
                **output,
                "file_id": result.file.id,
                "percentage_completed": 100,
                "thumbnail_zip_file_id": result.thumbnail_zip.id if result.thumbnail_zip else None,
                "thumbnails": thumbnails,
            })  # fmt: skip
        job.outputs = outputs
        job.status = "SUCCESS"
        job.percentage_completed = 100
        job.error_code = job.error_msg = None
        job.finished_at = job.updated_at = now
        job.lease_owner = job.lease_expires_at = None
    return True


def fail(db: Database, *, job_id: str, code: str, message: str, worker: str | None = None) -> bool:
    """Mark a queued or running job FAILURE with `code` and `message`.

    With `worker`, only while that worker holds the job; without, whatever runs it (recovery).
    """
    now = now_ms()
    condition = _ours(job_id, worker) if worker else (Job.id == job_id) & Job.status.in_(("QUEUED", RUNNING))
    with db.write() as session:
        changed = session.execute(
            update(Job)
            .where(condition)
            .values(status="FAILURE", error_code=code, error_msg=message, finished_at=now, updated_at=now,
                    lease_owner=None, lease_expires_at=None)
        ).rowcount  # fmt: skip
    return bool(changed)


@dataclass(frozen=True)
class Stalled:
    """A job whose worker's lease ran out."""

    job_id: str
    attempts: int


def stalled(db: Database, *, now: int) -> list[Stalled]:
    """Jobs PROCESSING under an expired lease: their worker died or hung."""
    with db.read() as session:
        rows = session.execute(
            select(Job.id, Job.attempts).where(Job.status == RUNNING, Job.lease_expires_at < now)
        ).all()
    return [Stalled(job_id, attempts or 0) for job_id, attempts in rows]


def requeue(db: Database, *, job_id: str, now: int) -> bool:
    """Put a job whose lease expired back to QUEUED; False if it changed meanwhile."""
    with db.write() as session:
        changed = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == RUNNING, Job.lease_expires_at < now)
            .values(status="QUEUED", lease_owner=None, lease_expires_at=None, updated_at=now)
        ).rowcount  # fmt: skip
    return bool(changed)


def overdue(db: Database, *, now: int) -> list[str]:
    """Queued jobs that waited longer than their pipeline's `cancel_timeout` (seconds; 0 = none)."""
    with db.read() as session:
        rows = session.execute(
            select(Job.id, Job.created_at, Pipeline.cancel_timeout)
            .join(Pipeline, Pipeline.id == Job.pipeline_id)
            .where(Job.status == "QUEUED", Pipeline.cancel_timeout > 0)
        ).all()
    return [job_id for job_id, created_at, timeout_s in rows if created_at + timeout_s * 1000 < now]


def queued(db: Database) -> list[str]:
    """Every queued job, oldest first (resubmitted when a worker starts, in case the queue lost one)."""
    with db.read() as session:
        return list(session.scalars(select(Job.id).where(Job.status == "QUEUED").order_by(Job.created_at)))
