"""`/v1/playlists/hls.m3u8` and `/v1/playlists/dash.mpd`: a tag's stream of a job's AutoGraph outputs.

Authorised as downloads are (`api.delivery_auth`: bearer token or signed link, the same scopes,
`ip`, `expiry_time`, single-use links). The master playlist (or MPD) names one rendition per
output; every URL in it is the server's own, signed and bound to the account, file, tag, client
address and expiry (`delivery.tokens.StreamGrant`): the media playlists
(`/v1/playlists/media/<token>.m3u8`) and, in those, the init and one segment per position
(`/v1/playlists/segments/<token>.mp4|.m4s`, each token naming its position). A segment is the
fragment the tag's codeword picks at that position (`flows.playlists`), and its delivery is
recorded as streaming. docs/api-decisions.md ("Playlists") lists every choice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Mapping
from email.utils import formatdate

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from leaktrace.api import errors, ranged
from leaktrace.api.auth import bearer_scheme
from leaktrace.api.delivery_auth import (
    LINK_REFUSED, caller, check_address, check_tag, expiry, ip_restriction, recorder, refused, use_up,
)  # fmt: skip
from leaktrace.api.openapi import error, error_responses
from leaktrace.delivery import tokens
from leaktrace.delivery.tokens import INIT_SEGMENT, StreamGrant
from leaktrace.flows import playlists
from leaktrace.flows.downloads import Unavailable
from leaktrace.store import files as file_service
from leaktrace.store import jobs as job_service
from leaktrace.store.accounts import Principal
from leaktrace.store.errors import InvalidInput
from leaktrace.store.models import File

router = APIRouter(tags=["playlists"])
declare_bearer = Depends(bearer_scheme)  # documents the bearer token; `caller` reads it (or a signature)

HLS_PATH = "/v1/playlists/hls.m3u8"
DASH_PATH = "/v1/playlists/dash.mpd"
MEDIA_PATH = "/v1/playlists/media"
SEGMENT_PATH = "/v1/playlists/segments"
INIT_SUFFIX, SEGMENT_SUFFIX = ".mp4", ".m4s"  # players (ffmpeg) judge a segment by its extension
HLS_TYPE = "application/vnd.apple.mpegurl"
DASH_TYPE = "application/dash+xml"
INIT_TYPE, SEGMENT_TYPE = "video/mp4", "video/iso.segment"
MAX_RENDITIONS = 32  # file ids in one `file_id` list
NO_STORE = {"Cache-Control": "no-store"}  # every playlist names URLs signed for one viewer


def _unavailable() -> errors.ApiError:
    return errors.ApiError(404, errors.FAMILIES["files"].not_found, "The file's stored bytes are not available")


# ---- GET /v1/playlists/hls.m3u8 and dash.mpd -----------------------------------------------------


def _outputs(request: Request, principal: Principal, params: Mapping[str, str]) -> list[File]:
    """The renditions asked for: `file_id` (a comma list, one job) or `job_id` (all its AutoGraph outputs)."""
    db = request.app.state.db
    if params.get("file_id") and params.get("job_id"):
        raise InvalidInput("name either file_id or job_id, not both")
    if params.get("job_id"):
        job = job_service.get(db, user_id=principal.user_id, job_id=params["job_id"])
        found = file_service.autograph_outputs(db, user_id=principal.user_id, job_id=job.id)
        if not found:
            raise InvalidInput("the job has no AutoGraph outputs to stream")
        return found
    ids = list(dict.fromkeys(part.strip() for part in (params.get("file_id") or "").split(",") if part.strip()))
    if not ids:
        raise InvalidInput("name the renditions: file_id (comma-separated) or job_id")
    if len(ids) > MAX_RENDITIONS:
        raise InvalidInput(f"at most {MAX_RENDITIONS} file ids")
    found = [file_service.get(db, user_id=principal.user_id, file_id=file_id) for file_id in ids]
    if not all(file.autograph and file.storage_key for file in found):
        raise InvalidInput("only stored AutoGraph outputs can be streamed")
    if len(found) > 1 and (found[0].job_id is None or any(file.job_id != found[0].job_id for file in found)):
        raise InvalidInput("the files of one playlist must be outputs of the same job")
    return found


def _streams(request: Request) -> list[tuple[StreamGrant, playlists.Rendition]]:
    """Check the caller and parameters, use up a single-use link: each rendition and its grant."""
    principal, params, signed = caller(request)
    outputs = _outputs(request, principal, params)
    tag = check_tag(outputs[0], params.get("autograph_tag"))
    assert tag is not None  # check_tag requires one for AutoGraph files
    client_ip = ip_restriction(request, params)
    expires_at = expiry(params, int(time.time()))
    storage = request.app.state.storage
    try:
        renditions = [playlists.rendition(storage, file, tag=tag) for file in outputs]
    except Unavailable:
        raise _unavailable() from None
    use_up(request, signed)
    return [
        (StreamGrant(user_id=principal.user_id, application_id=principal.application_id, file_id=file.id, tag=tag,
                     expires_at=expires_at, client_ip=client_ip), item)  # fmt: skip
        for file, item in zip(outputs, renditions, strict=True)
    ]


def _signed(request: Request, grant: StreamGrant, *, purpose: str) -> str:
    settings = request.app.state.settings
    return tokens.issue(grant, key=settings.signing_key(purpose))


def _media_url(request: Request, grant: StreamGrant) -> str:
    base = request.app.state.settings.base_url
    return f"{base}{MEDIA_PATH}/{_signed(request, grant, purpose=tokens.PLAYLIST_PURPOSE)}.m3u8"


def _segment_url(request: Request, grant: StreamGrant, position: int) -> str:
    base = request.app.state.settings.base_url
    token = _signed(request, dataclasses.replace(grant, segment=position), purpose=tokens.SEGMENT_PURPOSE)
    return f"{base}{SEGMENT_PATH}/{token}{INIT_SUFFIX if position == INIT_SEGMENT else SEGMENT_SUFFIX}"


def hls_master(request: Request) -> Response:
    streams = _streams(request)
    grants = {item.file_id: grant for grant, item in streams}
    text = playlists.hls_master([item for _, item in streams], media_url=lambda item: _media_url(request, grants[item.file_id]))
    return Response(text, media_type=HLS_TYPE, headers=NO_STORE)


def dash_mpd(request: Request) -> Response:
    streams = _streams(request)
    grants = {item.file_id: grant for grant, item in streams}
    text = playlists.dash_mpd(
        [item for _, item in streams],
        init_url=lambda item: _segment_url(request, grants[item.file_id], INIT_SEGMENT),
        segment_urls=lambda item: [_segment_url(request, grants[item.file_id], i) for i in range(len(item.durations_s))],
    )  # fmt: skip
    return Response(text, media_type=DASH_TYPE, headers=NO_STORE)


# ---- the signed media playlists and segments -----------------------------------------------------


def _checked(request: Request, *, purpose: str) -> tuple[StreamGrant, File, str | None]:
    """The grant of the URL's token (signed for `purpose`), its file and the client's address."""
    state = request.app.state
    try:
        grant = tokens.check(request.path_params["token"], key=state.settings.signing_key(purpose), now_s=time.time(),
                             kind=StreamGrant)  # fmt: skip
    except tokens.TokenError as exc:
        raise refused(LINK_REFUSED, f"Invalid streaming link: {exc.reason}") from None
    ip = check_address(request, grant.client_ip)
    return grant, file_service.get(state.db, user_id=grant.user_id, file_id=grant.file_id), ip


def hls_media(request: Request) -> Response:
    grant, file, _ = _checked(request, purpose=tokens.PLAYLIST_PURPOSE)
    if grant.segment is not None:
        raise refused(LINK_REFUSED, "Invalid streaming link: not a media playlist")
    try:
        item = playlists.rendition(request.app.state.storage, file, tag=grant.tag)
    except Unavailable:
        raise _unavailable() from None
    text = playlists.hls_media(
        item, init_url=_segment_url(request, grant, INIT_SEGMENT),
        segment_urls=[_segment_url(request, grant, i) for i in range(len(item.durations_s))],
    )  # fmt: skip
    return Response(text, media_type=HLS_TYPE, headers=NO_STORE)


def segment(request: Request) -> Response:
    """One segment (or the init) of a tag's stream; Range works; each GET is recorded as streaming."""
    grant, file, ip = _checked(request, purpose=tokens.SEGMENT_PURPOSE)
    if grant.segment is None:
        raise refused(LINK_REFUSED, "Invalid streaming link: not a segment")
    try:
        content, offset, copy_size = playlists.segment(request.app.state.storage, file, tag=grant.tag, position=grant.segment)
    except Unavailable:
        raise _unavailable() from None
    changed_ms = file.updated_at or file.created_at
    digest = hashlib.sha256(f"{file.id}\0{grant.tag}\0{grant.segment}\0{changed_ms}".encode()).hexdigest()
    representation = ranged.Representation(
        content_type=INIT_TYPE if grant.segment == INIT_SEGMENT else SEGMENT_TYPE, etag=f'"{digest[:32]}"',
        last_modified=formatdate(changed_ms / 1000, usegmt=True), disposition="inline",
    )  # fmt: skip
    head = request.method == "HEAD"
    done = None if head else recorder(request, file, application_id=grant.application_id, tag=grant.tag,
                                      copy_size=copy_size, ip=ip, copy_offset=offset, streaming=True)  # fmt: skip
    return ranged.respond(content, request_headers=request.headers, representation=representation, head=head, on_done=done)


def _query(name: str, description: str) -> dict[str, object]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": "string"}, "description": description}


PLAYLIST_PARAMETERS = [
    _query("file_id", "Comma-separated AutoGraph outputs of one job, one rendition each (or job_id)"),
    _query("job_id", "All AutoGraph outputs of this job (or file_id)"),
    _query("autograph_tag", "The viewer's tag (required)"),
    _query("expiry_time", "When the playlist's URLs expire, Unix seconds"),
    _query("ip", "Only this client address may use the URLs (IPv4 as a 32-bit integer, or text)"),
    _query("client_id", "Signed links: the signing application"),
    _query("multi_use", "Signed links: false for a single-use link"),
    _query("signature", "Signed links: HMAC-SHA256 hex, the last parameter"),
]
_TEXT = {"schema": {"type": "string"}}
_REFUSED = error("Bad credentials, scope, signature, used link or address", LINK_REFUSED, "Invalid signed link")
router.add_api_route(HLS_PATH, hls_master, methods=["GET"], summary="An HLS master playlist of a tag's stream",
                     responses={200: {"description": "The master playlist", "content": {HLS_TYPE: _TEXT}},
                                **error_responses("files"), 403: _REFUSED},
                     openapi_extra={"parameters": PLAYLIST_PARAMETERS}, dependencies=[declare_bearer])  # fmt: skip
router.add_api_route(DASH_PATH, dash_mpd, methods=["GET"], summary="A DASH MPD of a tag's stream",
                     responses={200: {"description": "The MPD", "content": {DASH_TYPE: _TEXT}},
                                **error_responses("files"), 403: _REFUSED},
                     openapi_extra={"parameters": PLAYLIST_PARAMETERS}, dependencies=[declare_bearer])  # fmt: skip
_TOKEN = [{"name": "token", "in": "path", "required": True, "description": "Signed by the server",
           "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_-]+\.[0-9a-f]{64}$"}}]  # fmt: skip
_STREAM_REFUSED = error("Bad, expired or foreign URL, or another client address", LINK_REFUSED, "Invalid streaming link")
router.add_api_route(MEDIA_PATH + "/{token}.m3u8", hls_media, methods=["GET"], summary="A signed HLS media playlist",
                     responses={200: {"description": "The media playlist", "content": {HLS_TYPE: _TEXT}}, 403: _STREAM_REFUSED},
                     openapi_extra={"parameters": _TOKEN})  # fmt: skip
for _suffix in (INIT_SUFFIX, SEGMENT_SUFFIX):
    router.add_api_route(SEGMENT_PATH + "/{token}" + _suffix, segment, methods=["GET"], summary="A signed segment",
                         responses={200: {"description": "The segment", "content": {INIT_TYPE: _TEXT, SEGMENT_TYPE: _TEXT}},
                                    206: {"description": "A range of it"}, 403: _STREAM_REFUSED},
                         openapi_extra={"parameters": _TOKEN})  # fmt: skip
    router.add_api_route(SEGMENT_PATH + "/{token}" + _suffix, segment, methods=["HEAD"], include_in_schema=False)
