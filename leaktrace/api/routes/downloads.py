"""`/v1/files/downloads`: a time-limited delivery URL for a file (a tag's copy for AutoGraph files),
and the delivery path itself, which streams the bytes with Range support and records who got what.

`GET`/`HEAD /v1/files/downloads` (alias `/v1/files/intern/downloads`) is authorised by a bearer
token or by an HMAC-signed link (reference §4, `delivery.signing.verify` over the raw request
target). It answers `302` with `Location` (`redirect=true`) or JSON `{"download": {...}}` naming
`/v1/files/downloads/deliver/<token>`, a server-signed grant (`delivery.tokens`). `GET`/`HEAD` of
that path streams the file; each response is recorded off the request path
(`flows.access.AccessRecorder`). docs/api-decisions.md ("Downloads") lists every choice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Mapping
from email.utils import formatdate
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from leaktrace.api import errors, ranged, responses
from leaktrace.api.auth import bearer_scheme
from leaktrace.api.delivery_auth import (
    LINK_REFUSED, TOO_MANY_DOWNLOADS, caller, check_address, check_tag, expiry, ip_restriction, recorder, refused, use_up,
)  # fmt: skip
from leaktrace.api.openapi import REFERENCE, error, error_responses
from leaktrace.api.query import ViewOptions, parse_bool, parse_int
from leaktrace.delivery import tokens
from leaktrace.flows.downloads import Unavailable, open_content

from leaktrace.store import files as file_service
from leaktrace.store.accounts import Principal
from leaktrace.store.errors import InvalidInput
from leaktrace.store.models import File

router = APIRouter(tags=["downloads"])
declare_bearer = Depends(bearer_scheme)  # documents the bearer token; `caller` reads it (or a signature)

PATHS = ("/v1/files/downloads", "/v1/files/intern/downloads")
DELIVER_PATH = "/v1/files/downloads/deliver"
MAX_PARALLEL_DOWNLOADS = 10_000
COPY_CONTENT_TYPE = "video/mp4"  # a tag's copy is a fragmented MP4
FALLBACK_CONTENT_TYPE = "application/octet-stream"


# ---- GET /v1/files/downloads ---------------------------------------------------------------------


def _file(request: Request, principal: Principal, params: Mapping[str, str]) -> File:
    db = request.app.state.db
    if params.get("file_id"):
        return file_service.get(db, user_id=principal.user_id, file_id=params["file_id"])
    if params.get("pipeline_id") and params.get("object_key"):
        return file_service.get_by_object_key(
            db, user_id=principal.user_id, pipeline_id=params["pipeline_id"], object_key=params["object_key"]
        )
    raise InvalidInput("name the file: file_id, or pipeline_id and object_key")


def _grant(request: Request, principal: Principal, params: Mapping[str, str]) -> tuple[tokens.Grant, bool]:
    """Check the parameters; returns the grant and whether to redirect."""
    file = _file(request, principal, params)
    if file.type == "folder" or file.storage != "intern" or not file.storage_key:
        raise InvalidInput("only files whose bytes are stored here can be downloaded")
    tag = check_tag(file, params.get("autograph_tag"))
    redirect = bool(parse_bool("redirect", params.get("redirect")))
    inline = bool(parse_bool("streaming", params.get("streaming")))
    max_parallel = parse_int("max_parallel_downloads", params.get("max_parallel_downloads"), minimum=1,
                             maximum=MAX_PARALLEL_DOWNLOADS)  # fmt: skip
    client_ip = ip_restriction(request, params)
    grant = tokens.Grant(
        user_id=principal.user_id, application_id=principal.application_id, file_id=file.id, tag=tag,
        expires_at=expiry(params, int(time.time())), client_ip=client_ip, max_parallel=max_parallel, inline=inline,
    )  # fmt: skip
    return grant, redirect


def _downloads(request: Request) -> Response:
    """Check the caller and parameters, use up a single-use link, answer the delivery URL."""
    principal, params, signed = caller(request)
    view = ViewOptions.from_request(request)  # before a single-use link is used up
    grant, redirect = _grant(request, principal, params)
    if signed is not None and not signed.multi_use and request.method == "HEAD":
        # A client looks before it fetches; the look must not use the link up, nor fetch anything.
        grant = dataclasses.replace(grant, head_only=True)
    else:
        use_up(request, signed)
    settings = request.app.state.settings
    url = f"{settings.base_url}{DELIVER_PATH}/{tokens.issue(grant, key=settings.signing_key(tokens.SIGNING_PURPOSE))}"
    if redirect:
        return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
    body = {"download": {"url": url, "file": {"id": grant.file_id}, "autograph_tag": grant.tag,
                         "expiry_time": grant.expires_at, "streaming": grant.inline}}  # fmt: skip
    if grant.tag is None:
        del body["download"]["autograph_tag"]
    response = responses.respond(view, body)
    response.headers["Cache-Control"] = "no-store"
    return response


def _query(name: str, schema: dict[str, object], description: str) -> dict[str, object]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_BOOL = {"type": "string", "enum": ["true", "false"]}
DOWNLOAD_PARAMETERS = [
    _query("file_id", {"type": "string"}, "The file (or pipeline_id and object_key)"),
    _query("pipeline_id", {"type": "string"}, "The pipeline object_key is relative to"),
    _query("object_key", {"type": "string"}, "output_prefix + output name, or an upload's key"),
    _query("autograph_tag", {"type": "string"}, "The viewer's tag; required for AutoGraph files"),
    _query("redirect", _BOOL, "true: 302 to the delivery URL; false (default): JSON"),
    _query("streaming", _BOOL, "true: Content-Disposition inline"),
    _query("expiry_time", {"type": "integer"}, "When the delivery URL expires, Unix seconds"),
    _query("ip", {"type": "string"}, "Only this client address may use the URL (IPv4 as a 32-bit integer, or text)"),
    _query("max_parallel_downloads", {"type": "integer"}, "Most deliveries of this file and tag in flight at once"),
    _query("client_id", {"type": "string"}, "Signed links: the signing application"),
    _query("multi_use", _BOOL, "Signed links: false for a single-use link"),
    _query("signature", {"type": "string"}, "Signed links: HMAC-SHA256 hex, the last parameter"),
]
DOWNLOAD_SCHEMA = {
    "type": "object",
    "properties": {"download": {"type": "object", "properties": {
        "url": {"type": "string", "format": "uri"}, "file": REFERENCE, "autograph_tag": {"type": "string"},
        "expiry_time": {"type": "integer"}, "streaming": {"type": "boolean"},
    }, "required": ["url", "file", "expiry_time", "streaming"]}},
    "required": ["download"],
}  # fmt: skip
DOWNLOAD_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "The delivery URL", "content": {"application/json": {"schema": DOWNLOAD_SCHEMA}}},
    302: {"description": "redirect=true: Location is the delivery URL"},
    **error_responses("files"),
    403: error("Bad credentials, scope, signature, used link or address", LINK_REFUSED, "Invalid signed link"),
}
for _path in PATHS:
    router.add_api_route(_path, _downloads, methods=["GET"], summary="A download URL for a file or a tag's copy",
                         responses=DOWNLOAD_RESPONSES, openapi_extra={"parameters": DOWNLOAD_PARAMETERS},
                         dependencies=[declare_bearer])  # fmt: skip
    router.add_api_route(_path, _downloads, methods=["HEAD"], include_in_schema=False)


# ---- GET /v1/files/downloads/deliver/<token> -----------------------------------------------------


def _representation(file: File, grant: tokens.Grant, size: int) -> ranged.Representation:
    """Content type, validators (stable per file, tag and stored version) and disposition."""
    changed_ms = file.updated_at or file.created_at
    digest = hashlib.sha256(f"{file.id}\0{grant.tag or ''}\0{size}\0{changed_ms}".encode()).hexdigest()
    content_type = COPY_CONTENT_TYPE if file.autograph else (file.mime_type or FALLBACK_CONTENT_TYPE)
    name = file.name or file.id
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    kind = "inline" if grant.inline else "attachment"
    return ranged.Representation(
        content_type=content_type,
        etag=f'"{digest[:32]}"',
        last_modified=formatdate(changed_ms / 1000, usegmt=True),
        disposition=f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}",
    )


def deliver(request: Request) -> Response:
    """Stream the granted file (or tag's copy): whole, one range or several; HEAD: headers only."""
    state, token = request.app.state, request.path_params["token"]
    try:
        grant = tokens.check(token, key=state.settings.signing_key(tokens.SIGNING_PURPOSE), now_s=time.time())
    except tokens.TokenError as exc:
        raise refused(LINK_REFUSED, f"Invalid download link: {exc.reason}") from None
    ip = check_address(request, grant.client_ip)
    file = file_service.get(state.db, user_id=grant.user_id, file_id=grant.file_id)
    try:
        content = open_content(state.storage, file, tag=grant.tag)
    except Unavailable:
        raise errors.ApiError(404, errors.FAMILIES["files"].not_found, "The file's stored bytes are not available") from None
    representation = _representation(file, grant, content.size)
    head = request.method == "HEAD"
    if grant.head_only and not head:
        raise refused(LINK_REFUSED, "This download link answers HEAD only: GET the signed link itself")
    if head:
        return ranged.respond(content, request_headers=request.headers, representation=representation, head=True, on_done=None)
    if not state.in_flight.try_acquire(file.id, grant.tag, limit=grant.max_parallel):
        raise refused(TOO_MANY_DOWNLOADS, f"Too many parallel downloads: at most {grant.max_parallel}", status=429)
    try:
        return ranged.respond(content, request_headers=request.headers, representation=representation, head=False,
                              on_done=recorder(request, file, application_id=grant.application_id,
                                               tag=grant.tag, copy_size=content.size, ip=ip,
                                               on_end=lambda: state.in_flight.release(file.id, grant.tag)))  # fmt: skip
    except BaseException:
        state.in_flight.release(file.id, grant.tag)
        raise


_BYTES = {"schema": {"type": "string", "format": "binary"}}
DELIVER_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "The whole file or copy", "content": {"video/mp4": _BYTES, "application/octet-stream": _BYTES}},
    206: {"description": "One range, or several as multipart/byteranges",
          "content": {"video/mp4": _BYTES, "multipart/byteranges": _BYTES}},
    403: error("Bad, expired or foreign delivery URL, or another client address", LINK_REFUSED, "Invalid download link"),
    404: error("The file or its bytes are gone", errors.FAMILIES["files"].not_found, "Requested file does not exist"),
    416: error("No requested range overlaps the file", errors.FAMILIES["files"].invalid_input, "Range not satisfiable"),
    429: error("max_parallel_downloads reached", TOO_MANY_DOWNLOADS, "Too many parallel downloads"),
}
DELIVER_PARAMETERS = [
    {"name": "token", "in": "path", "required": True, "description": "The grant, as handed out by /v1/files/downloads",
     "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_-]+\.[0-9a-f]{64}$"}},
    {"name": "Range", "in": "header", "required": False, "schema": {"type": "string"}, "description": "bytes=…"},
    {"name": "If-Range", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "An ETag or Last-Modified: the Range applies only to that representation"},
]  # fmt: skip
router.add_api_route(DELIVER_PATH + "/{token}", deliver, methods=["GET"], summary="The bytes of a download URL",
                     responses=DELIVER_RESPONSES, openapi_extra={"parameters": DELIVER_PARAMETERS})  # fmt: skip
router.add_api_route(DELIVER_PATH + "/{token}", deliver, methods=["HEAD"], include_in_schema=False)
