"""`/v1/backtraces/` (also served as `/v1/titles/backtraces/`): submit and read backtraces."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

from leaktrace.api import present, responses
from leaktrace.api.auth import require
from leaktrace.api.openapi import error_responses, list_envelope, single_envelope
from leaktrace.api.query import ListOptions, ViewOptions, parse_choice
from leaktrace.store import backtraces as service
from leaktrace.store.accounts import Principal
from leaktrace.store.errors import InvalidInput
from leaktrace.store.listing import Sort

router = APIRouter(tags=["backtraces"])
PREFIXES = ("/v1/backtraces", "/v1/titles/backtraces")

NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdRef(Strict):
    id: NonEmpty


class BacktraceInput(Strict):
    input_name: NonEmpty


class BacktraceBody(Strict):
    pipeline: IdRef | None = None
    pipeline_id: NonEmpty | None = None
    input: BacktraceInput

    @model_validator(mode="after")
    def _one_pipeline(self) -> BacktraceBody:
        if (self.pipeline is None) == (self.pipeline_id is None):
            raise ValueError("give the pipeline as pipeline: {id} or pipeline_id")
        return self


class BacktraceRequest(Strict):
    backtrace: BacktraceBody


autograph = require("autograph")


def create_backtrace(
    request: Request, body: Annotated[BacktraceRequest, Body()], principal: Principal = Depends(autograph)
) -> Response:
    """Store a QUEUED backtrace of a leaked copy of job `job_id`'s title and queue it."""
    view = ViewOptions.from_request(request)
    job_id = request.query_params.get("job_id")
    if not job_id:
        raise InvalidInput("job_id is required")
    spec = body.backtrace
    backtrace = service.create(
        request.app.state.db,
        user_id=principal.user_id,
        application_id=principal.application_id,
        job_id=job_id,
        pipeline_id=spec.pipeline.id if spec.pipeline else spec.pipeline_id or "",
        input_name=spec.input.input_name,
    )
    request.app.state.queue.submit_backtrace(backtrace.id)
    ctx = responses.context(request, view, principal.user_id)
    return responses.one(ctx, view, "backtrace", present.backtrace_created(ctx, backtrace), status=201)


def list_backtraces(request: Request, principal: Principal = Depends(autograph)) -> Response:
    """List the account's backtraces with paging, sorting, tag and status filters."""
    view = ViewOptions.from_request(request)
    options = ListOptions.from_request(request)
    params = request.query_params
    filters = service.BacktraceFilters(
        autograph_tag=params.get("extracted_data.autograph_tag"),
        status=parse_choice("status", params.get("status"), service.STATUSES),
    )
    ctx = responses.context(request, view, principal.user_id)
    db = request.app.state.db

    def fetch(sort: Sort, start: int, limit: int | None) -> Any:
        return service.list_backtraces(db, user_id=principal.user_id, filters=filters, sort=sort, start=start, limit=limit)

    return responses.many(
        request, ctx, view, options,
        kind="backtrace", plural="backtraces", collection="backtraces", sort_columns=tuple(service.SORT_COLUMNS),
        fetch=fetch, present=lambda items: present.backtraces(ctx, items),
    )  # fmt: skip


def get_backtrace(request: Request, backtrace_id: str, principal: Principal = Depends(autograph)) -> Response:
    """One backtrace of the account, with its extracted tags and their access statistics."""
    view = ViewOptions.from_request(request)
    backtrace = service.get(request.app.state.db, user_id=principal.user_id, backtrace_id=backtrace_id)
    ctx = responses.context(request, view, principal.user_id)
    return responses.one(ctx, view, "backtrace", present.backtraces(ctx, [backtrace])[0])


for prefix in PREFIXES:
    documented = prefix == PREFIXES[0]
    router.add_api_route(
        prefix, create_backtrace, methods=["POST"], status_code=201, include_in_schema=documented,
        responses={201: single_envelope("backtrace", "Queued", kind="backtrace_created"), **error_responses("backtraces")},
    )  # fmt: skip
    router.add_api_route(
        prefix, list_backtraces, methods=["GET"], include_in_schema=documented,
        responses={200: list_envelope("backtraces", "backtrace"), **error_responses("backtraces")},
    )  # fmt: skip
    router.add_api_route(
        prefix + "/{backtrace_id}", get_backtrace, methods=["GET"], include_in_schema=documented,
        responses={200: single_envelope("backtrace"), **error_responses("backtraces")},
    )  # fmt: skip
