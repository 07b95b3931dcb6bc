"""`/v1/applications/`: read the account's applications (created with `leaktrace admin create-app`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from leaktrace.api import present, responses
from leaktrace.api.auth import require
from leaktrace.api.openapi import error_responses, list_envelope, single_envelope
from leaktrace.api.query import ListOptions, ViewOptions
from leaktrace.store import accounts
from leaktrace.store.accounts import Principal
from leaktrace.store.listing import Page, Sort

router = APIRouter(tags=["applications"])
reader = require("me", "mediahub_read")


@router.get("/v1/applications", responses={200: list_envelope("applications", "application"), **error_responses("applications")})
def list_applications(request: Request, principal: Principal = Depends(reader)) -> Response:
    """The account's applications, oldest first."""
    view = ViewOptions.from_request(request)
    options = ListOptions.from_request(request)
    ctx = responses.context(request, view, principal.user_id)
    db = request.app.state.db

    def fetch(sort: Sort, start: int, limit: int | None) -> Page:
        apps = accounts.list_applications(db, user_id=principal.user_id)
        return Page(total=len(apps), items=apps[start : start + limit if limit else None])

    return responses.many(
        request, ctx, view, options, kind="application", plural="applications", collection="applications", sort_columns=(),
        fetch=fetch, present=lambda items: [present.application(ctx, item) for item in items],
    )  # fmt: skip


@router.get("/v1/applications/{application_id}", responses={200: single_envelope("application"), **error_responses("applications")})
def get_application(request: Request, application_id: str, principal: Principal = Depends(reader)) -> Response:
    """One application of the account (without its secret)."""
    view = ViewOptions.from_request(request)
    app = accounts.get_application(request.app.state.db, user_id=principal.user_id, application_id=application_id)
    ctx = responses.context(request, view, principal.user_id)
    return responses.one(ctx, view, "application", present.application(ctx, app))
