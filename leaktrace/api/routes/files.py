"""`/v1/files/`: read, list and delete the account's stored files."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from leaktrace.api import present, responses
from leaktrace.api.auth import require
from leaktrace.api.openapi import error_responses, list_envelope, result_envelope, single_envelope
from leaktrace.api.query import ListOptions, ViewOptions
from leaktrace.flows import files as file_flows
from leaktrace.store import files as service
from leaktrace.store.accounts import Principal
from leaktrace.store.errors import InvalidInput
from leaktrace.store.listing import Sort

router = APIRouter(tags=["files"])

read = require("mediahub_read")
write = require("mediahub_write")


@router.get("/v1/files", responses={200: list_envelope("files"), **error_responses("files")})
def list_files(request: Request, principal: Principal = Depends(read)) -> Response:
    """List the account's files; filters `type`, `pipeline.id`, `job.id`, `user_data`."""
    view = ViewOptions.from_request(request)
    options = ListOptions.from_request(request)
    params = request.query_params
    for name in ("pipeline.id", "job.id", "user_data"):
        if "\x00" in params.get(name, ""):
            raise InvalidInput(f"{name} must not contain NUL characters")
    filters = service.FileFilters(
        types=service.parse_types(params.get("type")),
        pipeline_id=params.get("pipeline.id"),
        job_id=params.get("job.id"),
        user_data=params.get("user_data"),
    )
    ctx = responses.context(request, view, principal.user_id)
    db = request.app.state.db

    def fetch(sort: Sort, start: int, limit: int | None) -> Any:
        return service.list_files(db, user_id=principal.user_id, filters=filters, sort=sort, start=start, limit=limit)

    return responses.many(
        request, ctx, view, options,
        kind="file", plural="files", collection="files", sort_columns=tuple(service.SORT_COLUMNS),
        fetch=fetch, present=lambda items: [present.file(ctx, item) for item in items],
    )  # fmt: skip


@router.get("/v1/files/{file_id}", responses={200: single_envelope("file"), **error_responses("files")})
def get_file(request: Request, file_id: str, principal: Principal = Depends(read)) -> Response:
    """One file of the account."""
    view = ViewOptions.from_request(request)
    file = service.get(request.app.state.db, user_id=principal.user_id, file_id=file_id)
    ctx = responses.context(request, view, principal.user_id)
    return responses.one(ctx, view, "file", present.file(ctx, file))


@router.delete("/v1/files/{file_id}", responses={200: result_envelope(), **error_responses("files")})
def delete_file(request: Request, file_id: str, principal: Principal = Depends(write)) -> Response:
    """Delete a file's record and its stored bytes (external files keep their bytes)."""
    view = ViewOptions.from_request(request)
    state = request.app.state
    file_flows.delete_file(state.db, state.storage, user_id=principal.user_id, file_id=file_id)
    return responses.respond(view, responses.SUCCESS_RESULT)
