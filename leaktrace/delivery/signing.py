"""HMAC-signed links (the reference's §4): building them for clients, verifying them on requests.

A signed link is a path and query starting with `/v1/`, ending with `&signature=<hex>`, where the
hex is HMAC-SHA256 over every byte before `&signature=`, keyed with the base64-decoded
`client_secret` of the application named by the link's `client_id`. `expiry_time` is absolute
Unix time in seconds. The server verifies the raw request target exactly as received, so clients
may order and encode parameters as they like, as long as they sign what they send.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlsplit

DOWNLOADS_PATH = "/v1/files/downloads/"
SIGNATURE_PARAM = "&signature="
CLOCK_SKEW_S = 30  # accepted lateness of `expiry_time`, for clocks that disagree a little
MIN_ABSOLUTE_EXPIRY = 10**9  # smaller values would be durations, which links do not use
_HEX_SIGNATURE = re.compile(r"^[0-9a-fA-F]{64}$")


class SignatureError(Exception):
    """A signed link is malformed, badly signed, from an unknown application, or expired."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def secret_key(client_secret: str) -> bytes:
    """The HMAC key: the raw bytes of the base64 `client_secret` (not the text itself)."""
    try:
        return base64.b64decode(client_secret, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("client_secret is not standard base64") from None


def sign(message: str, client_secret: str) -> str:
    """Lowercase hex HMAC-SHA256 of `message` (a path and query) under `client_secret`."""
    return hmac.new(secret_key(client_secret), message.encode(), hashlib.sha256).hexdigest()


def download_link(
    *,
    file_id: str,
    tag: str,
    expiry_time: int,
    client_id: str,
    client_secret: str,
    base_url: str,
    redirect: bool = True,
    multi_use: bool = True,
) -> str:
    """A signed `/v1/files/downloads/` link, with the parameters in the official script's order.

    The tag is percent-encoded before signing (URL-safe tags such as `viewer-42` are unchanged, so
    links match the official script's byte for byte); the server verifies the encoded form.
    """
    message = (
        f"{DOWNLOADS_PATH}?file_id={quote(file_id, safe='')}&autograph_tag={quote(tag, safe='')}"
        f"&redirect={str(redirect).lower()}&multi_use={str(multi_use).lower()}"
        f"&client_id={quote(client_id, safe='')}&expiry_time={expiry_time}"
    )
    return origin(base_url) + message + SIGNATURE_PARAM + sign(message, client_secret)


def expiry_after(validity_s: int, *, now: float | None = None) -> int:
    """The absolute `expiry_time` of a link valid for `validity_s` seconds from now."""
    return int(time.time() if now is None else now) + validity_s


def origin(base_url: str) -> str:
    """`scheme://host[:port]` of a base URL; signed messages always start at `/v1/`."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base URL must look like https://host[:port], not {base_url!r}")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ValueError("base URL must not have a path: signed links start at /v1/")
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class SignedRequest:
    """A verified signed request: its decoded parameters (signature excluded) and key facts."""

    client_id: str
    params: dict[str, str]
    expiry_time: int
    multi_use: bool
    signature: str


def verify(
    target: str,
    *,
    secret_for: Callable[[str], str | None],
    now: float | None = None,
    skew_s: int = CLOCK_SKEW_S,
) -> SignedRequest:
    """Check a raw request target (path and query, undecoded, as received); SignatureError if bad.

    `secret_for(client_id)` returns the application's base64 secret, or None when the application
    does not exist or is disabled. The signature must be the last parameter and appear once; no
    parameter may repeat; the HMAC is compared in constant time (hex in any case); `expiry_time`
    must not have passed (with `skew_s` of grace).
    """
    if not target.startswith("/v1/") or "?" not in target:
        raise SignatureError("a signed link is a /v1/ path with a query")
    cut = target.rfind(SIGNATURE_PARAM)
    if cut < 0:
        raise SignatureError("the link is not signed (signature must be the last parameter)")
    message, signature = target[:cut], target[cut + len(SIGNATURE_PARAM) :]
    if not _HEX_SIGNATURE.match(signature):
        raise SignatureError("signature must be the last parameter: 64 hex digits")
    pairs = parse_qsl(message.split("?", 1)[1], keep_blank_values=True)
    names = [name for name, _ in pairs]
    if len(names) != len(set(names)):
        raise SignatureError("a parameter is repeated")
    params = dict(pairs)
    if "signature" in params:
        raise SignatureError("signature is repeated")
    client_id = params.get("client_id")
    if not client_id:
        raise SignatureError("client_id is missing")
    client_secret = secret_for(client_id)
    if client_secret is None:
        raise SignatureError("unknown or disabled application")
    try:
        expected = sign(message, client_secret)
    except ValueError:
        raise SignatureError("the application's secret cannot sign links") from None
    if not hmac.compare_digest(expected, signature.lower()):
        raise SignatureError("signature does not match")
    raw_expiry = params.get("expiry_time", "")
    if not raw_expiry.isdigit() or int(raw_expiry) < MIN_ABSOLUTE_EXPIRY:
        raise SignatureError("expiry_time must be an absolute Unix time in seconds")
    expiry_time = int(raw_expiry)
    if expiry_time + skew_s < (time.time() if now is None else now):
        raise SignatureError("the link has expired")
    multi_use = params.get("multi_use", "true").lower()
    if multi_use not in ("true", "false"):
        raise SignatureError("multi_use must be true or false")
    return SignedRequest(
        client_id=client_id,
        params=params,
        expiry_time=expiry_time,
        multi_use=multi_use == "true",
        signature=signature.lower(),
    )


def raw_target(raw_path: bytes, query_string: bytes) -> str:
    """The request target as received, from an ASGI scope's `raw_path` and `query_string`.

    Decoded as UTF-8, which `sign` encodes back to the very same bytes; anything else cannot have
    been signed by a client and is refused.
    """
    raw = raw_path + (b"?" + query_string if query_string else b"")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureError("the request target is not UTF-8") from None
