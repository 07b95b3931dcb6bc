"""Bearer-token authentication and per-route scopes.

The token comes from `Authorization: Bearer …` or the `access_token` query parameter. No token at
all is 401; an unknown, expired or revoked token is 403 `0x0000003` (MediaHub's behaviour); a
valid token without the route's scope is 403 `0x0000004`.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from leaktrace.api import errors
from leaktrace.store import accounts
from leaktrace.store.accounts import Principal

# Declares the scheme in OpenAPI; the token itself is read below so the query form works too.
bearer_scheme = HTTPBearer(auto_error=False, description="OAuth2 client-credentials access token")
_declare_bearer = Depends(bearer_scheme)


def token_from(request: Request) -> str | None:
    """The bearer token of a request, from the header or `access_token`."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query_params.get("access_token") or None


def authenticate(request: Request) -> Principal:
    """The caller of `request`, or an `ApiError` (401/403)."""
    token = token_from(request)
    if token is None:
        raise errors.ApiError(401, errors.AUTHENTICATION_REQUIRED, "Authentication required")
    principal = accounts.authenticate(request.app.state.db, token=token)
    if principal is None:
        raise errors.ApiError(403, errors.INVALID_ACCESS_TOKEN, "Invalid access token")
    return principal


def require(*scopes: str) -> Callable[[Request], Principal]:
    """A dependency admitting callers whose token carries one of `scopes`."""

    def dependency(request: Request, _credentials: object = _declare_bearer) -> Principal:
        principal = authenticate(request)
        if not principal.has_any(scopes):
            raise errors.ApiError(403, errors.INSUFFICIENT_SCOPE, f"Insufficient scope: needs {' or '.join(scopes)}")
        return principal

    dependency.__name__ = f"require_{'_or_'.join(scopes)}"
    return dependency



def optional(request: Request, _credentials: object = _declare_bearer) -> Principal | None:
    """A dependency for routes open to anonymous callers: None without a token, 403 for a bad one."""
    if token_from(request) is None:
        return None
    return authenticate(request)
