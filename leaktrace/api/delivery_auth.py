"""Who may fetch a delivery, on what terms, and what is recorded: shared by downloads and playlists.

Both `/v1/files/downloads` and `/v1/playlists/*` are authorised the same way (reference §2.11,
§4): a bearer token, or an HMAC-signed link verified over the raw request target, the caller
needing a download scope. Both take the same `autograph_tag`, `expiry_time` and `ip` terms, and
both use up a single-use link. The codes are the files family's refusals. `recorder` builds the
callback a response runs when it ends, which queues the delivery for the access records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from fastapi import Request

from leaktrace.api import errors
from leaktrace.api.auth import authenticate, token_from
from leaktrace.api.query import parse_int
from leaktrace.delivery import addresses, signing
from leaktrace.ids import now_ms
from leaktrace.spans import Span
from leaktrace.store import access, accounts
from leaktrace.store.accounts import Principal
from leaktrace.store.errors import InvalidInput
from leaktrace.store.models import File

DOWNLOAD_SCOPES = ("mediahub_download_files", "mediahub_read")  # `mediahub` implies both
DEFAULT_URL_LIFETIME_S = 3600  # a delivery URL's life when the request names no expiry_time
MAX_URL_LIFETIME_S = 7 * 24 * 3600
MAX_TAG_CHARS = 500  # access_records.tag

# Files-family codes for refused links (beside 0x0230001 invalid input, 0x0230002 not found).
LINK_REFUSED = "0x0230003"  # bad, tampered or expired signature or delivery token: 403
LINK_USED = "0x0230004"  # a single-use link already used: 403
ADDRESS_REFUSED = "0x0230005"  # the link is restricted to another client address: 403
TOO_MANY_DOWNLOADS = "0x0230006"  # max_parallel_downloads reached: 429


def refused(code: str, message: str, status: int = 403) -> errors.ApiError:
    return errors.ApiError(status, code, message)


def caller(request: Request) -> tuple[Principal, Mapping[str, str], signing.SignedRequest | None]:
    """The caller and the request's parameters: a bearer token wins over a signature (§4.3)."""
    if token_from(request) is not None:
        principal, params, signed = authenticate(request), dict(request.query_params), None
    elif "signature" in request.query_params:
        state = request.app.state
        found: dict[str, Principal] = {}

        def secret_for(client_id: str) -> str | None:
            signer = accounts.link_signer(state.db, state.settings.fernet(), client_id=client_id)
            if signer is None:
                return None
            found["principal"] = signer[0]
            return signer[1]

        try:
            target = signing.raw_target(request.scope.get("raw_path", b""), request.scope.get("query_string", b""))
            signed = signing.verify(target, secret_for=secret_for)
        except signing.SignatureError as exc:
            raise refused(LINK_REFUSED, f"Invalid signed link: {exc.reason}") from None
        principal, params = found["principal"], signed.params
    else:
        raise errors.ApiError(401, errors.AUTHENTICATION_REQUIRED, "Authentication required: a bearer token or a signed link")
    if not principal.has_any(DOWNLOAD_SCOPES):
        raise errors.ApiError(403, errors.INSUFFICIENT_SCOPE, f"Insufficient scope: needs {' or '.join(DOWNLOAD_SCOPES)}")
    return principal, params, signed


def client_address(request: Request) -> str | None:
    """The client's address: the socket peer, or `X-Forwarded-For` behind a trusted proxy."""
    peer = request.client.host if request.client else None
    return addresses.client_address(
        peer=peer, forwarded_for=request.headers.get("x-forwarded-for"),
        trusted=request.app.state.settings.trusted_proxy_networks,
    )  # fmt: skip


def check_tag(file: File, raw: str | None) -> str | None:
    """The tag to deliver `file` as: required for AutoGraph files, refused for plain ones."""
    if raw is not None and (not raw or len(raw) > MAX_TAG_CHARS or any(ord(c) < 32 or ord(c) == 127 for c in raw)):
        raise InvalidInput(f"autograph_tag must be 1 to {MAX_TAG_CHARS} printable characters")
    if file.autograph and raw is None:
        raise InvalidInput("autograph_tag is required: an AutoGraph file is only delivered as a tag's copy")
    if raw is not None and not file.autograph:
        raise InvalidInput("autograph_tag is only valid for files with autograph: true")
    return raw


def expiry(params: Mapping[str, str], now_s: int) -> int:
    """When the delivery URL expires: `expiry_time` (absolute Unix seconds), capped, or the default."""
    requested = parse_int("expiry_time", params.get("expiry_time"), minimum=signing.MIN_ABSOLUTE_EXPIRY)
    if requested is None:
        return now_s + DEFAULT_URL_LIFETIME_S
    if requested <= now_s:
        raise InvalidInput("expiry_time has passed")
    return min(requested, now_s + MAX_URL_LIFETIME_S)


def ip_restriction(request: Request, params: Mapping[str, str]) -> str | None:
    """The client address the URLs are restricted to (`ip`), refused now if this client is another."""
    if params.get("ip") is None:
        return None
    try:
        client_ip = addresses.parse_ip_restriction(params["ip"])
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    check_address(request, client_ip)
    return client_ip


def check_address(request: Request, client_ip: str | None) -> str | None:
    """This request's client address, refused when `client_ip` restricts the URL to another one."""
    ip = client_address(request)
    if client_ip is not None and not addresses.same_address(ip, client_ip):
        raise refused(ADDRESS_REFUSED, "This link is restricted to another client address")
    return ip


def use_up(request: Request, signed: signing.SignedRequest | None) -> None:
    """Use up a single-use signed link (atomically: of two racing requests one wins)."""
    if signed is None or signed.multi_use:
        return
    if not access.consume_link(request.app.state.db, signature=signed.signature,
                               expires_at_ms=(signed.expiry_time + signing.CLOCK_SKEW_S) * 1000):  # fmt: skip
        raise refused(LINK_USED, "This single-use link has already been used")


def video_height(file: File) -> int | None:
    """The file's tallest video track, pixels (the access record's `highest_resolution`)."""
    tracks = file.video_tracks or []
    heights = [track.get("height") for track in tracks if isinstance(track, dict) and track.get("height")]
    return max(heights) if heights else None


def recorder(request: Request, file: File, *, application_id: str | None, tag: str | None, copy_size: int,
             ip: str | None, copy_offset: int = 0, streaming: bool = False,
             on_end: Callable[[], None] | None = None) -> Callable[[list[Span]], None]:  # fmt: skip
    """What a response calls when it ends: run `on_end`, queue the delivery for recording.

    The sent spans are of the response's content; `copy_offset` places them in the whole copy of
    `copy_size` bytes (a segment's place in the tag's copy), so each byte counts once towards
    `percentage_obtained` whether it came by download or by streaming.
    """
    state, headers, started_ms = request.app.state, request.headers, now_ms()

    def done(sent: list[Span]) -> None:
        if on_end is not None:
            on_end()
        state.access_recorder.submit(access.Delivery(
            user_id=file.user_id, application_id=application_id, job_id=file.job_id, file_id=file.id, tag=tag,
            file_size=copy_size, spans=tuple((start + copy_offset, end + copy_offset) for start, end in sent),
            at_ms=started_ms, ip_address=ip, user_agent=headers.get("user-agent"),
            accept_language=headers.get("accept-language"), highest_resolution=video_height(file),
            streaming_only=streaming,
        ))  # fmt: skip

    return done
