"""`POST /v1/oauth2/token/`: the client-credentials grant."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from leaktrace.api import errors, responses
from leaktrace.api.openapi import ERROR, error_responses
from leaktrace.api.query import ViewOptions, parse_int
from leaktrace.api.throttle import GuessThrottle
from leaktrace.store import accounts
from leaktrace.store.errors import InvalidInput

router = APIRouter(tags=["oauth2"])

GRANT_TYPES = ("client_credential", "client_credentials")  # MediaHub's spelling and RFC 6749's
FIELDS = ("grant_type", "client_id", "client_secret", "scope", "expires_in")

TOKEN_SCHEMA = {
    "type": "object",
    "properties": {
        "access_token": {"type": "string"},
        "token_type": {"type": "string", "enum": ["Bearer"]},
        "expires_in": {"type": "integer", "description": "seconds"},
        "scope": {"type": "string", "description": "comma-separated granted scopes"},
    },
}
THROTTLED = {
    "description": f"Too many failed authentications for this client id or address ({errors.TOO_MANY_FAILURES}); "
    "the Retry-After header gives the seconds to wait",
    "content": {"application/json": {"schema": ERROR}},
}
FORM_SCHEMA = {
    "type": "object",
    "properties": {name: {"type": "string"} for name in FIELDS},
    "required": ["grant_type", "client_id", "client_secret"],
}


async def _fields(request: Request) -> dict[str, str]:
    """The grant's fields from the form body, a JSON body, or the query (later sources win)."""
    values: dict[str, str] = {name: request.query_params[name] for name in FIELDS if name in request.query_params}
    content_type = request.headers.get("content-type", "")
    body: Any = {}
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        body = await request.form()
    elif content_type.startswith("application/json"):
        try:
            body = await request.json()
        except ValueError:
            raise InvalidInput("malformed JSON body") from None
        if not isinstance(body, dict):
            raise InvalidInput("the JSON body must be an object")
    for name in FIELDS:
        value = body.get(name)
        if value is not None:
            values[name] = str(value)
    return values


@router.post(
    "/v1/oauth2/token",
    openapi_extra={"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": FORM_SCHEMA}}}},
    responses={200: {"description": "A bearer token", "content": {"application/json": {"schema": TOKEN_SCHEMA}}},
               **error_responses("oauth2"), 429: THROTTLED},
)  # fmt: skip
async def issue_token(request: Request) -> Response:
    """Exchange an application's credentials for a bearer token."""
    view = ViewOptions.from_request(request)
    settings = request.app.state.settings
    fields = await _fields(request)
    if fields.get("grant_type") not in GRANT_TYPES:
        raise InvalidInput("grant_type must be client_credential or client_credentials")
    if not fields.get("client_id") or not fields.get("client_secret"):
        raise InvalidInput("client_id and client_secret are required")
    lifetime = parse_int("expires_in", fields.get("expires_in"), minimum=1, maximum=settings.token_max_lifetime)
    throttle: GuessThrottle = request.app.state.token_throttle
    client_id, address = fields["client_id"], request.client.host if request.client else ""
    verdict = throttle.check(client_id=client_id, address=address)
    if verdict.refused:
        raise errors.ApiError(
            429, errors.TOO_MANY_FAILURES, "Too many failed authentications: retry later",
            headers={"Retry-After": str(verdict.retry_after_s)},
        )  # fmt: skip
    app = accounts.verify_client(request.app.state.db, settings.fernet(), client_id=client_id, secret=fields["client_secret"])
    if app is None:
        await asyncio.sleep(throttle.failed(client_id=client_id, address=address))
        raise errors.ApiError(401, errors.INVALID_CLIENT, "Invalid client credentials")
    throttle.succeeded(client_id=client_id)
    allowed = set(app.scopes.split(","))
    requested = accounts.parse_scopes(fields.get("scope", "")) or sorted(allowed)
    refused = [scope for scope in requested if scope not in accounts.effective_scopes(allowed)]
    if refused:
        raise InvalidInput(f"scope not allowed for this application: {', '.join(refused)}")
    lifetime = lifetime or settings.token_lifetime
    token = accounts.issue_token(request.app.state.db, app=app, scopes=requested, lifetime_s=lifetime)
    body = {"access_token": token, "token_type": "Bearer", "expires_in": lifetime, "scope": ",".join(requested)}
    return responses.respond(view, body)
