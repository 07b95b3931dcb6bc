"""`/v1/codecs/`: the system codecs and their capabilities; no token needed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from leaktrace.api import present, responses
from leaktrace.api.auth import optional
from leaktrace.api.openapi import error_responses, list_envelope, single_envelope
from leaktrace.api.query import ListOptions, ViewOptions, parse_choice
from leaktrace.store import codecs as service
from leaktrace.store.accounts import Principal
from leaktrace.store.listing import Sort

router = APIRouter(tags=["codecs"])


@router.get("/v1/codecs", responses={200: list_envelope("codecs"), **error_responses("codecs")})
def list_codecs(request: Request, principal: Principal | None = Depends(optional)) -> Response:
    """List the codecs, optionally only `type=video` or `type=audio`."""
    view = ViewOptions.from_request(request)
    options = ListOptions.from_request(request)
    codec_type = parse_choice("type", request.query_params.get("type"), service.TYPES)
    ctx = responses.context(request, view, principal.user_id if principal else None)
    db = request.app.state.db

    def fetch(sort: Sort, start: int, limit: int | None) -> Any:
        return service.list_codecs(db, codec_type=codec_type, sort=sort, start=start, limit=limit)

    return responses.many(
        request, ctx, view, options,
        kind="codec", plural="codecs", collection="codecs", sort_columns=tuple(service.SORT_COLUMNS),
        fetch=fetch, present=lambda items: [present.codec(ctx, item) for item in items],
    )  # fmt: skip


@router.get("/v1/codecs/{codec_id}", responses={200: single_envelope("codec"), **error_responses("codecs")})
def get_codec(request: Request, codec_id: str, principal: Principal | None = Depends(optional)) -> Response:
    """One codec."""
    view = ViewOptions.from_request(request)
    codec = service.get(request.app.state.db, codec_id=codec_id)
    ctx = responses.context(request, view, principal.user_id if principal else None)
    return responses.one(ctx, view, "codec", present.codec(ctx, codec))
