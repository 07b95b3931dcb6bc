"""Delivery tokens: the server's own short-lived grant to fetch one file (as one tag's copy).

`GET /v1/files/downloads` checks the caller (bearer token or signed link) and answers with a
delivery URL, `/v1/files/downloads/deliver/<token>`. The token is `<payload>.<signature>`:
`payload` is base64url (unpadded) of compact JSON of a `Grant`, `signature` the lowercase hex
HMAC-SHA256 of the payload text under the server's `delivery` signing key
(`Settings.signing_key`). Every request to the URL (a HEAD, each Range read) is checked again,
in constant time, before anything else is read.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any, TypeVar

SIGNING_PURPOSE = "delivery"
PLAYLIST_PURPOSE = "playlist"  # media playlist URLs (StreamGrant without a segment)
SEGMENT_PURPOSE = "segment"  # segment URLs (StreamGrant with its segment)
MAX_TOKEN_CHARS = 4096  # a grant is a few hundred characters; refuse anything far longer unread
_HEX_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")


class TokenError(Exception):
    """A delivery token that is malformed, not ours, or expired."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Grant:
    """What a delivery URL allows: one file of one account, as one tag's copy, until `expires_at`.

    `client_ip` restricts the URL to one client address; `max_parallel` caps the deliveries of
    this file and tag in flight at once; `inline` asks for `Content-Disposition: inline`;
    `head_only` URLs (from a HEAD of a single-use link, which does not use it up) answer HEAD only.
    """

    user_id: str
    application_id: str | None
    file_id: str
    tag: str | None
    expires_at: int  # Unix time, seconds
    client_ip: str | None = None
    max_parallel: int | None = None
    inline: bool = False
    head_only: bool = False


@dataclass(frozen=True)
class StreamGrant:
    """What a playlist's URL allows: one rendition (file) of one account as one tag's stream.

    A media playlist's URL carries no `segment`; a segment's URL names its `segment` (a position
    index, or `INIT_SEGMENT` for the init segment). The two are signed under different purposes'
    keys, so neither stands in for the other, nor for a download's `Grant`.
    """

    user_id: str
    application_id: str | None
    file_id: str
    tag: str
    expires_at: int  # Unix time, seconds
    client_ip: str | None = None
    segment: int | None = None


INIT_SEGMENT = -1  # StreamGrant.segment of the init segment
AnyGrant = TypeVar("AnyGrant", Grant, StreamGrant)


def _sign(payload: str, key: bytes) -> str:
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


def issue(grant: Grant | StreamGrant, *, key: bytes) -> str:
    """The URL-safe token for `grant`."""
    document = json.dumps(dataclasses.asdict(grant), separators=(",", ":"), sort_keys=True)
    payload = base64.urlsafe_b64encode(document.encode()).decode().rstrip("=")
    return f"{payload}.{_sign(payload, key)}"


def check(token: str, *, key: bytes, now_s: float, kind: type[AnyGrant] = Grant) -> AnyGrant:  # type: ignore[assignment]
    """The `kind` grant of a token signed with `key` and not expired at `now_s`; TokenError otherwise."""
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise TokenError("malformed delivery link")
    payload, signature = token.split(".")
    if not _HEX_SIGNATURE.match(signature) or not hmac.compare_digest(_sign(payload, key), signature):
        raise TokenError("the delivery link's signature does not match")
    try:
        document: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        grant = kind(**document)
    except (binascii.Error, ValueError, TypeError):
        raise TokenError("malformed delivery link") from None
    if grant.expires_at < now_s:
        raise TokenError("the delivery link has expired")
    return grant
