"""`/v1/presets/`: system presets (readable without a token) and the account's custom presets."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from leaktrace.api import errors, present, responses
from leaktrace.api.auth import optional, require
from leaktrace.api.bodies import MAX_JSON_INTEGER
from leaktrace.api.openapi import catalogue_envelope, error_responses, list_envelope, result_envelope, single_envelope
from leaktrace.api.query import ListOptions, ViewOptions, parse_choice
from leaktrace.media.logos import LOGO_PRESETS
from leaktrace.media.thumbnails import THUMBNAIL_PRESETS
from leaktrace.store import presets as service
from leaktrace.store.accounts import Principal
from leaktrace.store.listing import Sort

router = APIRouter(tags=["presets"])

# No NUL characters: PostgreSQL cannot store them, and SQLite would; refusing them keeps both alike.
NO_NUL = r"^[^\x00]*$"
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
Text = Annotated[str, StringConstraints(max_length=4000, pattern=NO_NUL)]
Word = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.+-]{1,40}$")]
# Keys become XML element names in `format=xml` responses, so they must be valid ones.
Key = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")]
Integer = Annotated[int, Field(strict=True, ge=-MAX_JSON_INTEGER, le=MAX_JSON_INTEGER)]
Scalar = bool | Integer | float | Annotated[str, StringConstraints(max_length=200, pattern=NO_NUL)]
MAX_PASSES = 10


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdRef(Strict):
    id: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NO_NUL)]


class CodecChoice(Strict):
    codec: IdRef
    profile: Word
    passes: Annotated[int, Field(strict=True, ge=1, le=MAX_PASSES)]
    caps: Annotated[dict[Key, Scalar], Field(max_length=30)]


class TargetFormat(Strict):
    extension: Word | None = None
    container: Word
    vcodec: CodecChoice | None = None
    acodec: CodecChoice | None = None


class PresetBody(Strict):
    name: Name
    description: Text
    target_format: TargetFormat
    # Encoding settings (subtitle policy, quality, deinterlacing, resize, …) are stored as given.
    settings: Annotated[dict[Key, Scalar | None], Field(max_length=50)] | None = None


class PresetRequest(Strict):
    preset: PresetBody


write = require("mediahub_write")


def read(request: Request, principal: Principal | None = Depends(optional)) -> Principal | None:
    """Anonymous callers see system presets; a token must carry `mediahub_read` to see more."""
    if principal is not None and not principal.has_any(("mediahub_read",)):
        raise errors.ApiError(403, errors.INSUFFICIENT_SCOPE, "Insufficient scope: needs mediahub_read")
    return principal


def _definition(body: PresetBody) -> dict[str, Any]:
    return {
        "name": body.name,
        "description": body.description,
        "target_format": body.target_format.model_dump(),
        "settings": body.settings,
    }


@router.post("/v1/presets", status_code=201, responses={201: single_envelope("preset", "Created"), **error_responses("presets")})
def create_preset(request: Request, body: Annotated[PresetRequest, Body()], principal: Principal = Depends(write)) -> Response:
    """Create a custom preset, checked against the chosen codecs' capabilities."""
    view = ViewOptions.from_request(request)
    preset = service.create(request.app.state.db, user_id=principal.user_id, **_definition(body.preset))
    ctx = responses.context(request, view, principal.user_id)
    return responses.one(ctx, view, "preset", present.preset(ctx, preset), status=201)


@router.get("/v1/presets", responses={200: list_envelope("presets"), **error_responses("presets")})
def list_presets(request: Request, principal: Principal | None = Depends(read)) -> Response:
    """System presets and the account's custom ones (system only without a token); `type` filters."""
    view = ViewOptions.from_request(request)
    options = ListOptions.from_request(request)
    preset_type = parse_choice("type", request.query_params.get("type"), service.TYPES)
    user_id = principal.user_id if principal else None
    ctx = responses.context(request, view, user_id)
    db = request.app.state.db

    def fetch(sort: Sort, start: int, limit: int | None) -> Any:
        return service.list_presets(db, user_id=user_id, preset_type=preset_type, sort=sort, start=start, limit=limit)

    return responses.many(
        request, ctx, view, options,
        kind="preset", plural="presets", collection="presets", sort_columns=tuple(service.SORT_COLUMNS),
        fetch=fetch, present=lambda items: [present.preset(ctx, item) for item in items],
    )  # fmt: skip


# Thumbnail and logo presets are fixed by the service (leaktrace.media) and named in jobs, so they
# are listed whole, without paging; these routes come before /v1/presets/{preset_id}.
THUMBNAIL_LISTING = [preset.listing() for preset in THUMBNAIL_PRESETS.values()]
LOGO_LISTING = [preset.listing() for preset in LOGO_PRESETS.values()]


@router.get(
    "/v1/presets/thumbnails",
    responses={200: catalogue_envelope("thumbnail_presets", THUMBNAIL_LISTING), **error_responses("presets")},
)
def list_thumbnail_presets(request: Request, principal: Principal | None = Depends(read)) -> Response:
    """The thumbnail presets a job's `thumbnails[].thumbnail_preset` can name; no token needed."""
    return _catalogue(request, principal, "thumbnail_presets", THUMBNAIL_LISTING)


@router.get("/v1/presets/logos", responses={200: catalogue_envelope("logo_presets", LOGO_LISTING), **error_responses("presets")})
def list_logo_presets(request: Request, principal: Principal | None = Depends(read)) -> Response:
    """The logo presets a job's `logos[].logo_preset` can name; no token needed."""
    return _catalogue(request, principal, "logo_presets", LOGO_LISTING)


def _catalogue(request: Request, principal: Principal | None, key: str, listing: list[dict[str, Any]]) -> Response:
    view = ViewOptions.from_request(request)
    ctx = responses.context(request, view, principal.user_id if principal else None)
    return responses.respond(view, {key: [ctx.obj(preset) for preset in listing]})


@router.get("/v1/presets/{preset_id}", responses={200: single_envelope("preset"), **error_responses("presets")})
def get_preset(request: Request, preset_id: str, principal: Principal | None = Depends(read)) -> Response:
    """One system preset, or one of the account's custom presets."""
    view = ViewOptions.from_request(request)
    user_id = principal.user_id if principal else None
    preset = service.get(request.app.state.db, user_id=user_id, preset_id=preset_id)
    ctx = responses.context(request, view, user_id)
    return responses.one(ctx, view, "preset", present.preset(ctx, preset))


@router.put("/v1/presets/{preset_id}", responses={200: single_envelope("preset", "Updated"), **error_responses("presets")})
def replace_preset(
    request: Request, preset_id: str, body: Annotated[PresetRequest, Body()], principal: Principal = Depends(write)
) -> Response:
    """Replace a custom preset's definition; system presets cannot change."""
    view = ViewOptions.from_request(request)
    preset = service.replace(request.app.state.db, user_id=principal.user_id, preset_id=preset_id, **_definition(body.preset))
    ctx = responses.context(request, view, principal.user_id)
    return responses.one(ctx, view, "preset", present.preset(ctx, preset))


@router.delete("/v1/presets/{preset_id}", responses={200: result_envelope(), **error_responses("presets")})
def delete_preset(request: Request, preset_id: str, principal: Principal = Depends(write)) -> Response:
    """Delete a custom preset no queued or running job uses; system presets cannot be deleted."""
    view = ViewOptions.from_request(request)
    service.delete(request.app.state.db, user_id=principal.user_id, preset_id=preset_id)
    return responses.respond(view, responses.SUCCESS_RESULT)
