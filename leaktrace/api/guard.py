"""The ASGI layer every request passes before routing: paths, body limits, body time limits, and
the last line against unexpected errors.

- A trailing slash is dropped: MediaHub writes collections with a slash (`/v1/jobs/`) and items
  without; routes are declared without, and both spellings reach the same route without a redirect
  (a redirect would lose POST bodies).
- Bodies over `max_body_bytes` are refused (413) before they are read whole, with or without a
  Content-Length. Paths matching `uncapped_paths` (the upload form, which streams to storage
  under its own limit, `LEAKTRACE_MAX_UPLOAD_BYTES`) have neither this cap nor the total time
  limit below, only the idle one.
- A body must keep arriving: a pause longer than `idle_timeout_s` (`LEAKTRACE_BODY_IDLE_TIMEOUT_S`,
  default `BODY_IDLE_TIMEOUT_S`) before the next chunk, or a
  body still incomplete `BODY_TOTAL_TIMEOUT_S` after the request started, is answered 408 and the
  connection closed, so a client that declares 500,000 bytes and sends 2 cannot hold a worker.
- JSON bodies are read whole (they are parsed whole anyway) and checked by `bodies.check_json_body`
  before any route sees them: 400 when they break a rule.
- An unexpected exception becomes the 500 envelope here, without re-raising: the server then
  keeps the client's kept-alive connection open (Starlette's outermost handler would re-raise, and
  uvicorn closes the connection of any request whose application raised).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leaktrace.api import bodies, errors

log = logging.getLogger(__name__)

BODY_IDLE_TIMEOUT_S = 10.0
BODY_TOTAL_TIMEOUT_S = 60.0

# (request, status, code, message) -> the error response in the request's format.
ErrorResponder = Callable[[Request, int, str, str], Response]


class BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(status_code=413, detail="Request body too large")


class BodyTimedOut(HTTPException):
    def __init__(self) -> None:
        super().__init__(status_code=408, detail="Request body not received in time", headers={"Connection": "close"})


class RequestGuard:
    """See the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        respond_error: ErrorResponder,
        idle_timeout_s: float = BODY_IDLE_TIMEOUT_S,
        total_timeout_s: float = BODY_TOTAL_TIMEOUT_S,
        uncapped_paths: re.Pattern[str] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.respond_error = respond_error
        self.idle_timeout_s = idle_timeout_s
        self.total_timeout_s = total_timeout_s
        self.uncapped_paths = uncapped_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            scope = {**scope, "path": path.rstrip("/") or "/"}
        if self.uncapped_paths is not None and self.uncapped_paths.match(scope["path"]):
            guarded = self._guarded_receive(receive, max_bytes=math.inf, total_timeout_s=math.inf)
            await self._run(scope, guarded, send)
            return
        headers = dict(scope.get("headers") or ())
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(scope, send, 413, errors.BODY_TOO_LARGE, "Request body too large")
            return
        guarded = self._guarded_receive(receive, max_bytes=self.max_body_bytes, total_timeout_s=self.total_timeout_s)
        if _has_body(headers) and bodies.is_json_body(headers.get(b"content-type", b"").decode("latin-1")):
            try:
                body = await _read_whole(guarded)
                bodies.check_json_body(body)
            except BodyTooLarge:
                await self._refuse(scope, send, 413, errors.BODY_TOO_LARGE, "Request body too large")
                return
            except BodyTimedOut:
                await self._refuse(scope, send, 408, errors.BODY_TIMEOUT, "Request body not received in time", close=True)
                return
            except bodies.BodyRefused as exc:
                family = errors.family_for_path(scope["path"])
                await self._refuse(scope, send, 400, family.invalid_input, f"Invalid Input: {exc}")
                return
            guarded = _replay(body, receive)
        await self._run(scope, guarded, send)

    def _guarded_receive(self, receive: Receive, *, max_bytes: float, total_timeout_s: float) -> Receive:
        """`receive` with the size limit and the time limits applied until the body is complete."""
        received = 0
        complete = False
        deadline = time.monotonic() + total_timeout_s

        async def guarded() -> Message:
            nonlocal received, complete
            if complete:
                return await receive()
            wait_s = min(self.idle_timeout_s, deadline - time.monotonic())
            try:
                message = await asyncio.wait_for(receive(), timeout=max(wait_s, 0.0))
            except TimeoutError:
                raise BodyTimedOut() from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge()
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        return guarded

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = self.respond_error(Request(scope), 500, errors.INTERNAL_ERROR, "Internal Error")
            await response(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send, status: int, code: str, message: str, *, close: bool = False) -> None:
        response = self.respond_error(Request(scope), status, code, message)
        if close:
            response.headers["Connection"] = "close"

        async def nothing() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, nothing, send)


def _has_body(headers: dict[bytes, bytes]) -> bool:
    declared = headers.get(b"content-length")
    return b"transfer-encoding" in headers or (declared is not None and declared.strip() not in (b"", b"0"))


async def _read_whole(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands over `body` once, then waits on the real one (for disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
