"""`/v1/jobs/`: submit, read, list and delete jobs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from leaktrace.api import present, responses
from leaktrace.api.auth import require
from leaktrace.api.openapi import error_responses, list_envelope, result_envelope, single_envelope
from leaktrace.api.query import MAX_TIMESTAMP_MS, ListOptions, ViewOptions, parse_bool, parse_choice, parse_int
from leaktrace.flows import files as file_flows
from leaktrace.media.logos import check_logo_preset
from leaktrace.media.plan import ROTATIONS
from leaktrace.media.thumbnails import check_thumbnail_preset, thumbnail_names
from leaktrace.store import jobs as service
from leaktrace.store.accounts import Principal
from leaktrace.store.listing import Sort

router = APIRouter(tags=["jobs"])

MAX_LOGOS = 1  # one logo per output is burnt in (docs/api-decisions.md)

NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Short = Annotated[str, StringConstraints(max_length=100)]

# Every number a job accepts has a range (docs/api-decisions.md, "Ranges of numbers"); booleans
# are not numbers here. A value out of range is 400, never stored.
MAX_START_TIME_S = 10 * 365 * 24 * 3600
MAX_DURATION = 2**31 - 1
MAX_PIXELS = 16384
MAX_FRAMERATE = 300
MAX_BITRATE_KBPS = 1_000_000
MAX_PLAYLISTS = 50


def _number(*, ge: float, le: float, integer: bool = False) -> Any:
    """A JSON number within [ge, le] (strict: true/false and digit strings are refused)."""
    return Annotated[int if integer else float, Field(strict=True, ge=ge, le=le)]


# Sizes relative to the source or the preset ("90%"), or absolute numbers within `le`.
Percent = Annotated[str, StringConstraints(pattern=r"^\d{1,9}(\.\d{1,6})?%?$")]


def _scale(*, le: float) -> Any:
    return Percent | _number(ge=0, le=le, integer=True) | _number(ge=0, le=le)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdRef(Strict):
    id: NonEmpty


class JobInput(Strict):
    input_name: NonEmpty
    start_time: _number(ge=0, le=MAX_START_TIME_S) | None = None
    force_container: Short | None = None
    force_aspect_ratio: Short | None = None
    force_framerate: Short | _number(ge=0, le=MAX_FRAMERATE) | None = None
    force_interlaced: bool | None = None
    # The request names the reference documents; responses use the force_* names.
    framerate: Short | _number(ge=0, le=MAX_FRAMERATE) | None = None
    interlaced: bool | None = None


class Thumbnail(Strict):
    thumbnail_names: str | None = None
    thumbnail_preset: NonEmpty

    @model_validator(mode="after")
    def _known(self) -> Thumbnail:
        check_thumbnail_preset(self.thumbnail_preset)
        thumbnail_names(self.thumbnail_names, resolution="720p", count=1)  # refuses paths and unknown placeholders
        return self


class Logo(Strict):
    logo_image: NonEmpty
    logo_preset: NonEmpty

    @model_validator(mode="after")
    def _known(self) -> Logo:
        check_logo_preset(self.logo_preset)
        return self


class VideoSettings(Strict):
    rotate: Literal[ROTATIONS] | None = None  # degrees clockwise; the encoder turns by quarter turns
    height: _scale(le=MAX_PIXELS) | None = None
    width: _scale(le=MAX_PIXELS) | None = None
    framerate: _scale(le=MAX_FRAMERATE) | None = None
    bitrate: _scale(le=MAX_BITRATE_KBPS) | None = None
    aspect_ratio: Short | None = None


class AudioSettings(Strict):
    bitrate: _scale(le=MAX_BITRATE_KBPS) | None = None
    channels: _number(ge=1, le=8, integer=True) | None = None
    samplingrate: _number(ge=8000, le=96000, integer=True) | None = None


class OutputSettings(Strict):
    max_duration: _number(ge=0, le=MAX_DURATION, integer=True) | None = None
    video: VideoSettings | None = None
    audio: AudioSettings | None = None


class JobOutput(Strict):
    preset: IdRef | None = None
    preset_id: NonEmpty | None = None
    output_name: NonEmpty | None = None
    thumbnails: list[Thumbnail] | None = None
    logos: list[Logo] | None = Field(default=None, max_length=MAX_LOGOS)
    settings: OutputSettings | None = None

    @model_validator(mode="after")
    def _one_preset(self) -> JobOutput:
        if (self.preset is None) == (self.preset_id is None):
            raise ValueError("give the preset as preset: {id} or preset_id")
        return self


class Autograph(Strict):
    watermark_strength: Literal["light", "medium", "strong"] = "light"


class JobBody(Strict):
    pipeline: IdRef | None = None
    pipeline_id: NonEmpty | None = None
    input: JobInput
    outputs: list[JobOutput] = Field(min_length=1, max_length=50)
    autograph: Autograph | None = None
    user_data: str | None = Field(default=None, max_length=4096)
    output_prefix: str | None = Field(default=None, max_length=1024)
    # Free-form: only the rules every JSON body follows apply inside (api/bodies.py).
    playlists: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_PLAYLISTS)
    title: str | None = Field(default=None, max_length=1024)
    unique_custom_key: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _one_pipeline(self) -> JobBody:
        if (self.pipeline is None) == (self.pipeline_id is None):
            raise ValueError("give the pipeline as pipeline: {id} or pipeline_id")
        return self


class JobRequest(Strict):
    job: JobBody


def _submit_arguments(body: JobBody) -> dict[str, Any]:
    """Service keyword arguments for a validated body."""
    source = body.input
    submitted = [key for key in ("title", "unique_custom_key") if key in body.model_fields_set]
    if "start_time" in source.model_fields_set:
        submitted.append("input.start_time")
    return {
        "pipeline_id": body.pipeline.id if body.pipeline else body.pipeline_id,
        "input_name": source.input_name,
        "input_options": {
            "start_time": source.start_time,
            "force_container": source.force_container,
            "force_aspect_ratio": source.force_aspect_ratio,
            "force_framerate": source.force_framerate if source.force_framerate is not None else source.framerate,
            "force_interlaced": source.force_interlaced if source.force_interlaced is not None else source.interlaced,
        },
        "outputs": [
            {
                "preset_id": output.preset.id if output.preset else output.preset_id,
                "output_name": output.output_name,
                "thumbnails": [{**t.model_dump(), "file_id": None} for t in output.thumbnails] if output.thumbnails is not None else None,
                "logos": [logo.model_dump() for logo in output.logos] if output.logos is not None else None,
                "settings": output.settings.model_dump() if output.settings is not None else None,
            }
            for output in body.outputs
        ],
        "autograph": body.autograph.model_dump() if body.autograph else None,
        "user_data": body.user_data,
        "output_prefix": body.output_prefix,
        "playlists": body.playlists,
        "title": body.title,
        "unique_custom_key": body.unique_custom_key,
        "submitted_keys": submitted,
    }


read = require("mediahub_read")
submit = require("mediahub_submit_jobs")
write = require("mediahub_write")


@router.post("/v1/jobs", status_code=201, responses={201: single_envelope("job"), **error_responses("jobs")})
def create_job(request: Request, body: Annotated[JobRequest, Body()], principal: Principal = Depends(submit)) -> Response:
    """Validate the whole body, store the job as QUEUED and queue it."""
    view = ViewOptions.from_request(request)
    job = service.create(
        request.app.state.db, user_id=principal.user_id, application_id=principal.application_id,
        local_dirs=tuple(folder.resolve() for folder in request.app.state.settings.local_input_dirs),
        **_submit_arguments(body.job),
    )  # fmt: skip
    request.app.state.queue.submit_job(job.id)
    ctx = responses.context(request, view, principal.user_id)
    return responses.one(ctx, view, "job", present.job(ctx, job), status=201)


@router.get("/v1/jobs", responses={200: list_envelope("jobs", "job"), **error_responses("jobs")})
def list_jobs(request: Request, principal: Principal = Depends(read)) -> Response:
    """List the account's jobs with paging, sorting and the documented filters."""
    view = ViewOptions.from_request(request)
    options = ListOptions.from_request(request)
    params = request.query_params
    filters = service.JobFilters(
        user_data=params.get("user_data"),
        inprogress=parse_bool("inprogress", params.get("inprogress")),
        status=parse_choice("status", params.get("status"), service.STATUSES),
        autograph=parse_bool("autograph", params.get("autograph")),
        pipeline_id=params.get("pipeline.id"),
        input_file_name=params.get("input.file.name"),
        from_date=parse_int("from_date", params.get("from_date"), minimum=0, maximum=MAX_TIMESTAMP_MS),
        to_date=parse_int("to_date", params.get("to_date"), minimum=0, maximum=MAX_TIMESTAMP_MS),
    )
    ctx = responses.context(request, view, principal.user_id)
    db = request.app.state.db

    def fetch(sort: Sort, start: int, limit: int | None) -> Any:
        return service.list_jobs(db, user_id=principal.user_id, filters=filters, sort=sort, start=start, limit=limit)

    return responses.many(
        request, ctx, view, options,
        kind="job", plural="jobs", collection="jobs", sort_columns=tuple(service.SORT_COLUMNS),
        fetch=fetch, present=lambda items: [present.job(ctx, item) for item in items],
    )  # fmt: skip


@router.get("/v1/jobs/{job_id}", responses={200: single_envelope("job"), **error_responses("jobs")})
def get_job(request: Request, job_id: str, principal: Principal = Depends(read)) -> Response:
    """One job of the account."""
    view = ViewOptions.from_request(request)
    job = service.get(request.app.state.db, user_id=principal.user_id, job_id=job_id)
    ctx = responses.context(request, view, principal.user_id)
    return responses.one(ctx, view, "job", present.job(ctx, job))


@router.delete("/v1/jobs/{job_id}", responses={200: result_envelope(), **error_responses("jobs")})
def delete_job(request: Request, job_id: str, principal: Principal = Depends(write)) -> Response:
    """Cancel a queued or running job, or delete a finished one with its file records."""
    view = ViewOptions.from_request(request)
    state = request.app.state
    file_flows.delete_job(state.db, state.storage, user_id=principal.user_id, job_id=job_id)
    return responses.respond(view, responses.SUCCESS_RESULT)
