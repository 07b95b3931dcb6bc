"""`/v1/pipelines/`: create, read, list, update and delete pipelines."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from leaktrace.api import present, responses
from leaktrace.api.auth import require
from leaktrace.api.openapi import error_responses, list_envelope, result_envelope, single_envelope
from leaktrace.api.query import ListOptions, ViewOptions
from leaktrace.media.fetch.uris import mask_password
from leaktrace.store import pipelines as service
from leaktrace.store.accounts import Principal
from leaktrace.store.errors import InvalidInput
from leaktrace.store.listing import Sort

router = APIRouter(tags=["pipelines"])

LOCATION_FIELDS = ("input_download_dir", "image_download_dir", "output_upload_dir", "image_upload_dir")

# No NUL characters: PostgreSQL cannot store them, and SQLite would; refusing them keeps both alike.
NO_NUL = r"^[^\x00]*$"
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
Text = Annotated[str, StringConstraints(max_length=4000, pattern=NO_NUL)]
Uri = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=NO_NUL)]
MAX_SECONDS = 10 * 365 * 24 * 3600


def _seconds(value: Any) -> Any:
    # The reference's own example sends "3600": digits in a string count, booleans and fractions do not.
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError("must be a whole number of seconds")
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise ValueError("must be a whole number of seconds")
        return int(value.strip())
    return value


def _flag(value: Any) -> Any:
    # Booleans, or the strings "true"/"false" the reference's examples use; nothing else.
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool) and value is not None:
        raise ValueError("must be true or false")
    return value


Seconds = Annotated[int, BeforeValidator(_seconds), Field(ge=0, le=MAX_SECONDS)]
Flag = Annotated[bool, BeforeValidator(_flag)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DownloadOptions(Strict):
    auto_convert_input: Literal["on", "off"] | None = None
    https_certificate_check: Flag | None = None


class UploadOptions(Strict):
    s3_allow_read: Annotated[str, StringConstraints(max_length=100, pattern=NO_NUL)] | None = None
    s3_reduced_redundancy: Flag | None = None


class StoreOptions(Strict):
    mode: Literal["temporary", "permanent"] | None = None


class PingUrls(Strict):
    error: Uri | None = None
    warning: Uri | None = None
    started: Uri | None = None
    finished: Uri | None = None


class PipelineFields(Strict):
    """Every field of a pipeline; POST additionally requires name and description."""

    name: Name | None = None
    description: Text | None = None
    cancel_timeout: Seconds | None = None
    default_object_timeout: Seconds | None = None
    enable_backtrace_pings: Flag | None = None
    input_download_dir: Uri | None = None
    image_download_dir: Uri | None = None
    output_upload_dir: Uri | None = None
    image_upload_dir: Uri | None = None
    download_options: DownloadOptions | None = None
    upload_options: UploadOptions | None = None
    store_options: StoreOptions | None = None
    ping_urls: PingUrls | None = None

    def sent(self) -> dict[str, Any]:
        """Only the keys the caller sent (null included), groups as plain dicts of their sent keys."""
        out: dict[str, Any] = {}
        for key in self.model_fields_set:
            value = getattr(self, key)
            out[key] = value.model_dump(exclude_unset=True) if isinstance(value, BaseModel) else value
        return out


class NewPipeline(PipelineFields):
    name: Name
    description: Text


class CreateRequest(Strict):
    pipeline: NewPipeline


class UpdateRequest(Strict):
    pipeline: PipelineFields


read = require("mediahub_read")
write = require("mediahub_write")


def _check_ping_urls(values: dict[str, Any]) -> None:
    for event, url in (values.get("ping_urls") or {}).items():
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
                raise InvalidInput(f"ping_urls.{event} must be an http or https URL")


@router.post("/v1/pipelines", status_code=201, responses={201: single_envelope("pipeline", "Created"), **error_responses("pipelines")})
def create_pipeline(request: Request, body: Annotated[CreateRequest, Body()], principal: Principal = Depends(write)) -> Response:
    """Create a pipeline."""
    view = ViewOptions.from_request(request)
    values = body.pipeline.sent()
    _check_ping_urls(values)
    pipeline = service.create(request.app.state.db, user_id=principal.user_id, values=values)
    ctx = responses.context(request, view, principal.user_id)
    return responses.one(ctx, view, "pipeline", present.pipeline(ctx, pipeline), status=201)


@router.get("/v1/pipelines", responses={200: list_envelope("pipelines"), **error_responses("pipelines")})
def list_pipelines(request: Request, principal: Principal = Depends(read)) -> Response:
    """List the account's pipelines with paging and sorting."""
    view = ViewOptions.from_request(request)
    options = ListOptions.from_request(request)
    ctx = responses.context(request, view, principal.user_id)
    db = request.app.state.db

    def fetch(sort: Sort, start: int, limit: int | None) -> Any:
        return service.list_pipelines(db, user_id=principal.user_id, sort=sort, start=start, limit=limit)

    return responses.many(
        request, ctx, view, options,
        kind="pipeline", plural="pipelines", collection="pipelines", sort_columns=tuple(service.SORT_COLUMNS),
        fetch=fetch, present=lambda items: [present.pipeline(ctx, item) for item in items],
    )  # fmt: skip


@router.get("/v1/pipelines/{pipeline_id}", responses={200: single_envelope("pipeline"), **error_responses("pipelines")})
def get_pipeline(request: Request, pipeline_id: str, principal: Principal = Depends(read)) -> Response:
    """One pipeline of the account."""
    view = ViewOptions.from_request(request)
    pipeline = service.get(request.app.state.db, user_id=principal.user_id, pipeline_id=pipeline_id)
    ctx = responses.context(request, view, principal.user_id)
    return responses.one(ctx, view, "pipeline", present.pipeline(ctx, pipeline))


@router.put("/v1/pipelines/{pipeline_id}", responses={200: single_envelope("pipeline", "Updated"), **error_responses("pipelines")})
def update_pipeline(
    request: Request, pipeline_id: str, body: Annotated[UpdateRequest, Body()], principal: Principal = Depends(write)
) -> Response:
    """Partially update a pipeline: sent keys change, null resets, option groups merge."""
    view = ViewOptions.from_request(request)
    changes = body.pipeline.sent()
    _check_ping_urls(changes)
    current = service.get(request.app.state.db, user_id=principal.user_id, pipeline_id=pipeline_id)
    for key in LOCATION_FIELDS:  # a location sent back as shown (password masked) keeps its password
        if key in changes and changes[key] is not None and changes[key] == mask_password(getattr(current, key)):
            del changes[key]
    pipeline = service.update(request.app.state.db, user_id=principal.user_id, pipeline_id=pipeline_id, changes=changes)
    ctx = responses.context(request, view, principal.user_id)
    return responses.one(ctx, view, "pipeline", present.pipeline(ctx, pipeline))


@router.delete("/v1/pipelines/{pipeline_id}", responses={200: result_envelope(), **error_responses("pipelines")})
def delete_pipeline(request: Request, pipeline_id: str, principal: Principal = Depends(write)) -> Response:
    """Delete a pipeline no queued or running job uses (never the Default Pipeline)."""
    view = ViewOptions.from_request(request)
    service.delete(request.app.state.db, user_id=principal.user_id, pipeline_id=pipeline_id)
    return responses.respond(view, responses.SUCCESS_RESULT)
