"""Responses that send a `Content` whole or in byte ranges, and report what actually left.

One builder answers every case of RFC 9110 §14: no `Range` (200, the whole content), one range
(206 with `Content-Range`), several (206 `multipart/byteranges`, each part with its own
`Content-Type` and `Content-Range`), `If-Range` naming an older representation (200, whole), and
unsatisfiable ranges (416 with `Content-Range: bytes */size`, as an error envelope). HEAD gets
the same status and headers without a body.

Bytes are read from storage in a worker thread a chunk at a time, so a response never holds more
than one chunk; a span counts as sent only once the server accepted it, and `on_done` gets the
sent spans also when the client goes away mid-way (which ends the stream).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from leaktrace.api import errors
from leaktrace.delivery.ranges import Unsatisfiable, if_range_allows, parse_range
from leaktrace.flows.downloads import Content
from leaktrace.spans import Span

SendDone = Callable[[list[Span]], None]


@dataclass(frozen=True)
class Part:
    """One span of the content, preceded by its multipart header (empty for a plain response)."""

    header: bytes
    start: int
    end: int


@dataclass(frozen=True)
class Representation:
    """The validators and description of what is sent, identical for GET and HEAD."""

    content_type: str
    etag: str
    last_modified: str  # an HTTP date
    disposition: str


class ContentResponse(StreamingResponse):
    """Streams `parts` of a `Content`, then `closing`; calls `on_done(sent spans)` at the end."""

    def __init__(self, content: Content, *, status: int, headers: dict[str, str], parts: list[Part],
                 closing: bytes, on_done: SendDone | None) -> None:  # fmt: skip
        super().__init__(iter(()), status_code=status, headers=headers)
        self._content, self._parts, self._closing, self._on_done = content, parts, closing, on_done
        self._sent: list[Span] = []

    def _note(self, start: int, end: int) -> None:
        if self._sent and self._sent[-1][1] == start:
            self._sent[-1] = (self._sent[-1][0], end)
        else:
            self._sent.append((start, end))

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        for part in self._parts:
            if part.header:
                await send({"type": "http.response.body", "body": part.header, "more_body": True})
            chunks: Iterator[bytes] = self._content.chunks(part.start, part.end)
            offset = part.start
            while (chunk := await anyio.to_thread.run_sync(next, chunks, None)) is not None:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                self._note(offset, offset + len(chunk))
                offset += len(chunk)
        await send({"type": "http.response.body", "body": self._closing, "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self._on_done is not None:
                self._on_done(list(self._sent))


def _content_range(start: int, end: int, size: int) -> str:
    return f"bytes {start}-{end - 1}/{size}"


def respond(
    content: Content,
    *,
    request_headers: Headers,
    representation: Representation,
    head: bool,
    on_done: SendDone | None,
) -> ContentResponse:
    """The 200 or 206 response to a GET or HEAD of `content`; `ApiError` 416 for unsatisfiable ranges."""
    size = content.size
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": representation.etag,
        "Last-Modified": representation.last_modified,
        "Content-Disposition": representation.disposition,
        "Cache-Control": "private, no-transform",  # each viewer's copy is their own
    }
    spans: list[Span] | None = None
    if if_range_allows(request_headers.get("if-range"), etag=representation.etag, last_modified=representation.last_modified):
        try:
            spans = parse_range(request_headers.get("range"), size)
        except Unsatisfiable:
            family = errors.FAMILIES["files"]
            raise errors.ApiError(
                416, family.invalid_input, f"Range not satisfiable: the file has {size} bytes",
                headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"},
            ) from None  # fmt: skip
    closing = b""
    if spans is None:
        status, parts = 200, [Part(b"", 0, size)]
        headers["Content-Type"] = representation.content_type
        length = size
    elif len(spans) == 1:
        (start, end), status = spans[0], 206
        parts = [Part(b"", start, end)]
        headers["Content-Type"] = representation.content_type
        headers["Content-Range"] = _content_range(start, end, size)
        length = end - start
    else:
        status, boundary = 206, secrets.token_hex(16)
        parts = [
            Part(
                (f"\r\n--{boundary}\r\nContent-Type: {representation.content_type}\r\n"
                 f"Content-Range: {_content_range(start, end, size)}\r\n\r\n").encode("latin-1"),
                start, end,
            )
            for start, end in spans
        ]  # fmt: skip
        closing = f"\r\n--{boundary}--\r\n".encode("latin-1")
        headers["Content-Type"] = f"multipart/byteranges; boundary={boundary}"
        length = sum(len(part.header) + part.end - part.start for part in parts) + len(closing)
    headers["Content-Length"] = str(length)
    if head:
        return ContentResponse(content, status=status, headers=headers, parts=[], closing=b"", on_done=None)
    return ContentResponse(content, status=status, headers=headers, parts=parts, closing=closing, on_done=on_done)
