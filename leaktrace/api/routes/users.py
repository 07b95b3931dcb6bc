"""`/v1/users/`: the caller's own account (scope `me`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from leaktrace.api import present, responses
from leaktrace.api.auth import require
from leaktrace.api.openapi import error_responses, list_envelope, single_envelope
from leaktrace.api.query import ListOptions, ViewOptions
from leaktrace.store import accounts
from leaktrace.store.accounts import Principal
from leaktrace.store.errors import InvalidInput, NotFound
from leaktrace.store.listing import Page, Sort

router = APIRouter(tags=["users"])
me = require("me")

Text = Annotated[str, StringConstraints(max_length=1000)]
MAX_ZIP_CODE = 10**12 - 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Address(Strict):
    company_name: Text | None = None
    vat_id: Text | None = None
    street: Text | None = None
    city: Text | None = None
    state: Text | None = None
    country: Text | None = None
    zip_code: Text | Annotated[int, Field(strict=True, ge=0, le=MAX_ZIP_CODE)] | None = None
    company_email: Text | None = None

    @field_validator("zip_code")
    @classmethod
    def _zip_as_text(cls, value: str | int | None) -> str | None:
        # PUT documents an int, GET a string: store the string form.
        return None if value is None else str(value)


class Profile(Strict):
    website: Text | None = None
    short_bio: Text | None = None
    avatarURL: Text | None = None
    profileURL: Text | None = None


class Setting(Strict):
    location: Text | None = None
    language: Text | None = None
    time_zone: Text | None = None
    show_location_flag: bool | None = None
    newsletter_flag: bool | None = None
    notification_email: Text | None = None


class UserBody(Strict):
    first_name: Text | None = None
    last_name: Text | None = None
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    email: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)] | None = None
    address: Address | None = None
    billing_address: Address | None = None
    profile: Profile | None = None
    setting: Setting | None = None


class UserRequest(Strict):
    user: UserBody


def _changes(body: UserBody) -> dict[str, Any]:
    """Only the keys the caller sent; `address` is the PUT spelling of `billing_address`."""
    if "name" in body.model_fields_set and body.name is None:
        raise InvalidInput("name cannot be reset")
    changes: dict[str, Any] = {}
    for key in body.model_fields_set:
        value = getattr(body, key)
        if isinstance(value, BaseModel):
            value = value.model_dump(exclude_unset=True)
        changes["billing_address" if key == "address" else key] = value
    return changes


@router.get("/v1/users", responses={200: list_envelope("users", "user"), **error_responses("users")})
def list_users(request: Request, principal: Principal = Depends(me)) -> Response:
    """The caller's own account, as a one-item list."""
    view = ViewOptions.from_request(request)
    options = ListOptions.from_request(request)
    ctx = responses.context(request, view, principal.user_id)
    db = request.app.state.db

    def fetch(sort: Sort, start: int, limit: int | None) -> Page:
        user = accounts.get_user(db, user_id=principal.user_id)
        return Page(total=1, items=[user][start : start + limit if limit else None])

    return responses.many(
        request, ctx, view, options, kind="user", plural="users", collection="users", sort_columns=(),
        fetch=fetch, present=lambda items: [present.user(ctx, item) for item in items],
    )  # fmt: skip


@router.get("/v1/users/{user_id}", responses={200: single_envelope("user"), **error_responses("users")})
def get_user(request: Request, user_id: str, principal: Principal = Depends(me)) -> Response:
    """The caller's account; any other id is 404."""
    view = ViewOptions.from_request(request)
    if user_id != principal.user_id:
        raise NotFound("User does not exist")
    user = accounts.get_user(request.app.state.db, user_id=user_id)
    ctx = responses.context(request, view, principal.user_id)
    return responses.one(ctx, view, "user", present.user(ctx, user))


@router.put("/v1/users/{user_id}", responses={200: single_envelope("user", "Updated"), **error_responses("users")})
def update_user(
    request: Request, user_id: str, body: Annotated[UserRequest, Body()], principal: Principal = Depends(me)
) -> Response:
    """Partially update the caller's account: sent keys change, null resets."""
    view = ViewOptions.from_request(request)
    if user_id != principal.user_id:
        raise NotFound("User does not exist")
    user = accounts.update_user(request.app.state.db, user_id=user_id, changes=_changes(body.user))
    ctx = responses.context(request, view, principal.user_id)
    return responses.one(ctx, view, "user", present.user(ctx, user))
