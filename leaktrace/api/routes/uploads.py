"""`/v1/files/uploads/` (also `/v1/files/intern/uploads/`): bring a file in, in one part or in chunks.

1. `POST /v1/files/uploads?object_key=…&pipeline_id=…` creates the upload and its file record and
   returns `form_post_url` (our own form endpoint) with signed, opaque `form_post_params`.
2. The client POSTs `multipart/form-data` there: every `form_post_params` field, its own `chunk`
   and `chunks`, then the bytes as the field `file`. No bearer token: the signed parameters
   authorise that one upload until it expires. The body streams to storage as it arrives.
3. `PUT /v1/files/uploads/ID` with `{"upload": {"nb_chunks": N}}` checks every chunk is there and
   queues the assembly (COMPLETING); `GET /v1/files/uploads/ID` polls it to COMPLETED or FAILURE.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

import anyio
from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import ClientDisconnect

from leaktrace.api import errors, present, responses, upload_form
from leaktrace.api.auth import require
from leaktrace.api.openapi import error, error_responses, single_envelope
from leaktrace.api.query import ViewOptions, parse_int
from leaktrace.flows import uploads as flow
from leaktrace.ids import now_ms
from leaktrace.store import uploads as service
from leaktrace.store.accounts import Principal
from leaktrace.store.errors import InvalidInput, NotFound
from leaktrace.store.models import Upload

router = APIRouter(tags=["uploads"])
PREFIXES = ("/v1/files/uploads", "/v1/files/intern/uploads")
# The form endpoint reads its body as a stream under its own limit (LEAKTRACE_MAX_UPLOAD_BYTES),
# so the application's request-body cap must not apply to it.
FORM_PATH = re.compile(r"^/v1/files/(intern/)?uploads/[^/]+/form/?$")
MAX_IPV4 = 2**32 - 1
MAX_EXPIRES_AT_S = (2**63 - 1) // 1000  # stored in ms in a 64-bit column
# Form bodies stream in worker threads of their own, so slow uploads never take the threads
# that serve every other request; further uploads wait for a free one.
CONCURRENT_UPLOAD_STREAMS = 64
_upload_streams = anyio.CapacityLimiter(CONCURRENT_UPLOAD_STREAMS)

read = require("mediahub_read")
write = require("mediahub_write")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Completion(Strict):
    nb_chunks: int = Field(ge=1, le=flow.MAX_CHUNKS)


class CompletionRequest(Strict):
    upload: Completion


def _present(request: Request, view: ViewOptions, upload: Upload, *, user_id: str) -> Response:
    settings = request.app.state.settings
    params = None
    if upload.status == service.UPLOADING:
        params = upload_form.form_post_params(
            upload_id=upload.id,
            storage_key=upload.storage_key,
            name=upload.storage_key.rsplit("/", 1)[-1],
            expires_at_s=None if upload.expires_at is None else upload.expires_at // 1000,
            key=settings.signing_key(upload_form.SIGNING_PURPOSE),
        )
    ctx = responses.context(request, view, user_id)
    url = f"{settings.base_url}{PREFIXES[0]}/{upload.id}/form"
    return responses.one(ctx, view, "upload", present.upload(ctx, upload, form_post_url=url, form_post_params=params))


def _expiry_ms(raw: str | None) -> int | None:
    """`expires_at` (epoch seconds) as epoch ms: default 7 days from now, 0 = never, past = 400."""
    seconds = parse_int("expires_at", raw, minimum=0, maximum=MAX_EXPIRES_AT_S)
    now = now_ms()
    if seconds is None:
        return now + service.DEFAULT_LIFETIME_MS
    if seconds == 0:
        return None
    if seconds * 1000 <= now:
        raise InvalidInput("expires_at must be in the future (epoch seconds), or 0 for never")
    return seconds * 1000


def create_upload(request: Request, principal: Principal = Depends(write)) -> Response:
    """Start an upload of `object_key` into pipeline `pipeline_id`'s folder."""
    view = ViewOptions.from_request(request)
    params = request.query_params
    object_key, pipeline_id = params.get("object_key"), params.get("pipeline_id")
    if not object_key:
        raise InvalidInput("object_key is required")
    if not pipeline_id:
        raise InvalidInput("pipeline_id is required")
    state = request.app.state
    upload = flow.create_upload(
        state.db, state.storage,
        user_id=principal.user_id, application_id=principal.application_id, pipeline_id=pipeline_id,
        object_key=object_key, expires_at=_expiry_ms(params.get("expires_at")),
        ip=parse_int("ip", params.get("ip"), minimum=0, maximum=MAX_IPV4),
    )  # fmt: skip
    return _present(request, view, upload, user_id=principal.user_id)


def get_upload(request: Request, upload_id: str, principal: Principal = Depends(read)) -> Response:
    """One upload of the account, with its status."""
    view = ViewOptions.from_request(request)
    upload = service.get(request.app.state.db, user_id=principal.user_id, upload_id=upload_id)
    return _present(request, view, upload, user_id=principal.user_id)


def complete_upload(
    request: Request, upload_id: str, body: Annotated[CompletionRequest, Body()], principal: Principal = Depends(write)
) -> Response:
    """Check that chunks 0..nb_chunks-1 arrived and queue their assembly (status COMPLETING)."""
    view = ViewOptions.from_request(request)
    state = request.app.state
    try:
        upload, queue_it = flow.request_completion(
            state.db, state.storage, user_id=principal.user_id, upload_id=upload_id,
            nb_chunks=body.upload.nb_chunks, max_upload_bytes=state.settings.max_upload_bytes,
        )  # fmt: skip
    except flow.UploadTooLarge as exc:
        raise errors.ApiError(413, errors.BODY_TOO_LARGE, str(exc)) from None
    if queue_it:
        state.queue.submit_upload_completion(upload.id)
    return _present(request, view, upload, user_id=principal.user_id)


async def post_form(request: Request, upload_id: str) -> Response:
    """Receive one chunk (or the whole file) of an upload as `multipart/form-data`."""
    view = ViewOptions.from_request(request)
    state = request.app.state
    limit = state.settings.max_upload_bytes
    boundary = upload_form.boundary_of(request.headers.get("content-type"))
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + upload_form.FORM_OVERHEAD_BYTES:
        raise errors.ApiError(413, errors.BODY_TOO_LARGE, str(flow.UploadTooLarge(limit)))
    pieces = request.stream()

    async def next_piece() -> bytes | None:
        return await anext(pieces, None)

    receive = _receiver(request, upload_id=upload_id, boundary=boundary, next_piece=next_piece)
    try:
        upload, fields = await anyio.to_thread.run_sync(receive, limiter=_upload_streams)
    except flow.UploadTooLarge as exc:
        raise errors.ApiError(413, errors.BODY_TOO_LARGE, str(exc)) from None
    except ClientDisconnect:
        return Response(status_code=400)  # nobody is listening; the chunk was discarded
    status = upload_form.success_status(fields)
    if status == 204:
        return Response(status_code=204)
    response = _present(request, view, upload, user_id=upload.user_id)
    response.status_code = status
    return response


def _receiver(
    request: Request, *, upload_id: str, boundary: bytes, next_piece: Callable[[], Awaitable[bytes | None]]
) -> Callable[[], tuple[Upload, dict[str, str]]]:
    """The blocking part of `post_form`, run in a worker thread: parse, authorise, store the chunk.

    The chunk's part is published only when the whole form was read (closing boundary included);
    any error, a size overrun or the client going away discards it.
    """
    state = request.app.state
    key = state.settings.signing_key(upload_form.SIGNING_PURPOSE)

    def receive() -> tuple[Upload, dict[str, str]]:
        found: list[Upload] = []
        with contextlib.ExitStack() as stack:

            def open_file(fields: dict[str, str]) -> upload_form.Sink:
                # The signature is checked before the upload is looked up, so callers without a
                # valid form learn nothing about which uploads exist.
                signed_key = upload_form.verify(fields, upload_id=upload_id, key=key, now_s=time.time())
                upload = service.find(state.db, upload_id=upload_id)
                if upload is None:
                    raise NotFound("Upload does not exist")
                if upload.storage_key != signed_key:
                    raise upload_form.forbidden("key does not match the signed policy")
                chunk, chunks = upload_form.chunk_numbers(fields)
                flow.check_chunk(upload, chunk=chunk, chunks=chunks, now=now_ms())
                found.append(upload)
                return stack.enter_context(
                    flow.chunk_sink(state.storage, upload=upload, chunk=chunk, max_upload_bytes=state.settings.max_upload_bytes)
                )

            reader = upload_form.FormReader(boundary, open_file=open_file)
            while (piece := anyio.from_thread.run(next_piece)) is not None:
                reader.feed(piece)
            if not reader.finished:
                raise InvalidInput("the body ended before the form's closing boundary; the chunk was discarded")
            if not reader.file_received:
                raise InvalidInput("the form has no file field")
        return found[0], reader.fields

    return receive


FORM_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object",
        "description": "Every form_post_params field, then the bytes as `file` (last).",
        "properties": {
            **{name: {"type": "string"} for name in ("name", "key", "success_action_status", "filename", "policy", "signature")},
            "chunk": {"type": "string", "description": "index of this chunk, from 0"},
            "chunks": {"type": "string", "description": "how many chunks the file is sent in"},
            "file": {"type": "string", "format": "binary"},
        },
        "required": ["policy", "signature", "file"],
    }}},
}  # fmt: skip
TOO_LARGE = error("Larger than LEAKTRACE_MAX_UPLOAD_BYTES", errors.BODY_TOO_LARGE, "an upload may hold at most … bytes")
for prefix in PREFIXES:
    documented = prefix == PREFIXES[0]
    router.add_api_route(
        prefix, create_upload, methods=["POST"], include_in_schema=documented,
        responses={200: single_envelope("upload", "Created: upload with its form"), **error_responses("files")},
    )  # fmt: skip
    router.add_api_route(
        prefix + "/{upload_id}", get_upload, methods=["GET"], include_in_schema=documented,
        responses={200: single_envelope("upload"), **error_responses("files")},
    )  # fmt: skip
    router.add_api_route(
        prefix + "/{upload_id}", complete_upload, methods=["PUT"], include_in_schema=documented,
        responses={200: single_envelope("upload", "COMPLETING (or as it was, for a repeated request)"),
                   **error_responses("files"), 413: TOO_LARGE},
    )  # fmt: skip
    router.add_api_route(
        prefix + "/{upload_id}/form", post_form, methods=["POST"], status_code=201, include_in_schema=documented,
        openapi_extra={"requestBody": FORM_BODY},
        responses={201: single_envelope("upload", "The chunk is stored"), **error_responses("files"), 413: TOO_LARGE},
    )  # fmt: skip
