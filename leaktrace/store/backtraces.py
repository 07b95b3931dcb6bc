"""Backtraces: submit, read, list with filters, and the processing entry point.

A finished backtrace's result is its rows in `backtrace_tags` (one per extracted tag); the access
statistics shown with each tag come from `access_records` of the traced job, so they always reflect
everything recorded for that tag.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, distinct, func, select

from leaktrace.ids import now_ms
from leaktrace.store.db import Database
from leaktrace.store.errors import InvalidInput, NotFound
from leaktrace.store.jobs import input_file_name
from leaktrace.store.listing import Page, Sort, fetch_page, record_type
from leaktrace.store.models import AccessRecord, Backtrace, BacktraceTag, File, Job, Pipeline
from leaktrace.store.ownership import owned
from leaktrace.store.pipelines import resolve_input

log = logging.getLogger(__name__)

STATUSES = ("QUEUED", "SUCCESS", "FAILURE")

SORT_COLUMNS: dict[str, ColumnElement[Any]] = {
    "id": Backtrace.id,
    "created_at": Backtrace.created_at,
    "updated_at": Backtrace.updated_at,
    "finished_at": Backtrace.finished_at,
    "status": Backtrace.status,
    "percentage_completed": Backtrace.percentage_completed,
    "version": Backtrace.version,
    "error_code": Backtrace.error_code,
    "error_msg": Backtrace.error_msg,
    "input.input_name": Backtrace.input_name,
    "pipeline.id": Backtrace.pipeline_id,
    "job.id": Backtrace.job_id,
    "file.id": Backtrace.file_id,
    "application.id": Backtrace.application_id,
    "user.id": Backtrace.user_id,
}


@dataclass(frozen=True)
class BacktraceFilters:
    """The list filters of `GET /backtraces/`; None means "do not filter"."""

    autograph_tag: str | None = None
    status: str | None = None


@dataclass(frozen=True)
class ExtractedTag:
    """One entry of a backtrace's `extracted_data`."""

    autograph_tag: str
    access_records: list[AccessRecord]


def create(
    db: Database, *, user_id: str, application_id: str | None, job_id: str, pipeline_id: str, input_name: str
) -> Backtrace:
    """Validate references and store a QUEUED backtrace with a file record for the leaked copy."""
    with db.write() as session:
        job = owned(session, Job, job_id, user_id=user_id)
        if job is None:
            raise InvalidInput(f"job_id: job {job_id} does not exist")
        if not job.autograph_enabled:
            raise InvalidInput(f"job_id: job {job_id} was not submitted with autograph")
        pipeline = owned(session, Pipeline, pipeline_id, user_id=user_id)
        if pipeline is None:
            raise InvalidInput(f"pipeline {pipeline_id} does not exist")
        now = now_ms()
        location = resolve_input(pipeline, input_name)  # refuses names leaving the pipeline's folder
        leak = File(
            user_id=user_id,
            application_id=application_id,
            pipeline_id=pipeline.id,
            storage=location.storage,
            storage_key=location.key,
            name=input_file_name(input_name),
            type="file",
            created_at=now,
            updated_at=now,
        )
        session.add(leak)
        session.flush()
        backtrace = Backtrace(
            user_id=user_id,
            application_id=application_id,
            job_id=job.id,
            pipeline_id=pipeline.id,
            input_name=input_name,
            file_id=leak.id,
            status="QUEUED",
            percentage_completed=0,
            created_at=now,
            updated_at=now,
        )
        session.add(backtrace)
    return backtrace


def get(db: Database, *, user_id: str, backtrace_id: str) -> Backtrace:
    """One of the account's backtraces; NotFound otherwise."""
    with db.read() as session:
        backtrace = owned(session, Backtrace, backtrace_id, user_id=user_id)
    if backtrace is None:
        raise NotFound("Backtrace does not exist")
    return backtrace


def _own_conditions(user_id: str, filters: BacktraceFilters) -> list[ColumnElement[bool]]:
    """The filters a backtrace row answers by itself: its account and its status."""
    conditions = [Backtrace.user_id == user_id]
    if filters.status is not None:
        conditions.append(Backtrace.status == filters.status)
    return conditions


def _tag_matches(text: str) -> ColumnElement[bool]:
    return BacktraceTag.autograph_tag.icontains(text, autoescape=True)


def _filtered(user_id: str, filters: BacktraceFilters) -> Select[Any]:
    stmt = select(Backtrace.__table__).where(*_own_conditions(user_id, filters))
    if filters.autograph_tag is not None:
        stmt = stmt.where(Backtrace.id.in_(select(BacktraceTag.backtrace_id).where(_tag_matches(filters.autograph_tag))))
    return stmt


def _count_by_tag(user_id: str, filters: BacktraceFilters) -> Select[Any] | None:
    """How to count the matches of a tag filter; None counts the filtered list itself.

    A substring match can only be checked by reading every tag, and the list query does that to
    collect the matching backtrace ids, then walks all of the account's backtraces looking each
    one up among them. Counting that way does both again. Counting from the matching tags instead
    costs the same read of the tags plus one primary-key lookup per match.
    """
    if filters.autograph_tag is None:
        return None
    own = select(Backtrace.id).where(Backtrace.id == BacktraceTag.backtrace_id, *_own_conditions(user_id, filters))
    return select(func.count(distinct(BacktraceTag.backtrace_id))).where(_tag_matches(filters.autograph_tag), own.exists())


def list_backtraces(
    db: Database, *, user_id: str, filters: BacktraceFilters, sort: Sort, start: int, limit: int | None
) -> Page:
    """The account's backtraces matching `filters`, one page in `sort` order."""
    with db.read() as session:
        return fetch_page(
            session,
            _filtered(user_id, filters),
            id_column=Backtrace.id,
            sort_columns=SORT_COLUMNS,
            sort=sort,
            start=start,
            limit=limit,
            count=_count_by_tag(user_id, filters),
        )


def extracted_data(db: Database, backtraces: list[Backtrace]) -> dict[str, list[ExtractedTag]]:
    """For each backtrace id, its extracted tags with the access records of that tag's copies.

    One query for any number of backtraces, so a page of 1000 costs about what one costs: each
    tag comes joined with the access records of its backtrace's job and account that carry it
    (one row with empty record columns when there are none), in tag order, then access order.
    """
    ids = [b.id for b in backtraces]
    if not ids:
        return {}
    tags, traced, access = BacktraceTag.__table__, Backtrace.__table__, AccessRecord.__table__
    same_copies = and_(
        access.c.job_id == traced.c.job_id, access.c.tag == tags.c.autograph_tag, access.c.user_id == traced.c.user_id
    )
    stmt = (
        select(tags.c.backtrace_id, tags.c.position, tags.c.autograph_tag, *access.c)
        .join(traced, traced.c.id == tags.c.backtrace_id)
        .outerjoin(access, same_copies)
        .where(tags.c.backtrace_id.in_(ids))
        .order_by(tags.c.backtrace_id, tags.c.position, access.c.first_accessed_at, access.c.id)
    )
    with db.read() as session:
        rows = session.execute(stmt).all()
    access_record = record_type(tuple(access.c.keys()))
    result: dict[str, list[ExtractedTag]] = defaultdict(list)
    current: tuple[str, int] | None = None
    for backtrace_id, position, autograph_tag, *columns in rows:
        if (backtrace_id, position) != current:
            current = (backtrace_id, position)
            entry = ExtractedTag(autograph_tag=autograph_tag, access_records=[])
            result[backtrace_id].append(entry)
        record = access_record._make(columns)
        if record.id is not None:
            entry.access_records.append(record)
    return result


def process(db: Database, *, backtrace_id: str) -> None:
    """Run a queued backtrace.

    Alignment and detection are not implemented yet, so the backtrace stays QUEUED; this only
    confirms it still exists.
    """
    with db.read() as session:
        backtrace = session.get(Backtrace, backtrace_id)
    if backtrace is None:
        log.info("backtrace %s no longer exists", backtrace_id)
        return
    log.info("backtrace %s stays %s: no detector is installed yet", backtrace_id, backtrace.status)
