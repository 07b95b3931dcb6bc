"""The application factory: routes, error handling, request guards, OpenAPI, embedded worker."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from leaktrace.api import errors
from leaktrace.api.guard import RequestGuard
from leaktrace.api.query import parse_bool, wants_xml
from leaktrace.api.render import JSON_TYPE, XML_TYPE, serialize
from leaktrace.api.routes import (
    applications, backtraces, codecs, downloads, files, jobs, oauth2, pipelines, playlists, presets, uploads, users,
)  # fmt: skip
from leaktrace.api.throttle import GuessThrottle
from leaktrace.config import Settings, get_settings
from leaktrace.flows.access import AccessRecorder
from leaktrace.flows.downloads import InFlight
from leaktrace.storage import open_storage
from leaktrace.store.db import Database, open_database
from leaktrace.store.errors import InvalidInput, NotFound
from leaktrace.tasks.queue import Supervisor, TaskQueue, embedded_consumer, make_queue


ROUTERS = (
    oauth2.router, jobs.router, backtraces.router, users.router, applications.router,
    pipelines.router, codecs.router, presets.router, uploads.router, downloads.router, playlists.router, files.router,
)  # fmt: skip


def create_app(
    settings: Settings | None = None,
    *,
    db: Database | None = None,
    queue: TaskQueue | None = None,
    run_worker: bool = False,
) -> FastAPI:
    """Build the API. With `run_worker`, consumer threads for the queue run inside the server."""
    settings = settings or get_settings()
    settings.ensure_data_dir()
    db = db or open_database(settings.resolved_database_url)
    queue = queue or make_queue(settings)
    recorder = AccessRecorder(db)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        keep_garbage_collection_off_requests()
        consumer = embedded_consumer(queue, workers=settings.worker_threads) if run_worker else None
        supervisor = Supervisor(queue) if run_worker else None
        if consumer is not None and supervisor is not None:
            consumer.start()
            supervisor.start()
        recorder.start()
        try:
            yield
        finally:
            recorder.stop()
            if consumer is not None and supervisor is not None:
                supervisor.stop()
                consumer.stop(graceful=True)

    app = FastAPI(
        title="Leaktrace",
        version="1",
        description="Forensic watermarking and leak tracing behind a MediaHub v1 compatible API.",
        openapi_url="/v1/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.queue = queue
    app.state.storage = open_storage(settings.resolved_storage_url)
    app.state.token_throttle = GuessThrottle()
    app.state.access_recorder = recorder
    app.state.in_flight = InFlight()
    for router in ROUTERS:
        app.include_router(router)
    _install_error_handlers(app)
    # Unexpected exceptions become the 500 envelope in RequestGuard, which keeps the connection open.
    app.add_middleware(
        RequestGuard, max_body_bytes=settings.max_body_bytes, respond_error=_error_response,
        idle_timeout_s=settings.body_idle_timeout_s, uncapped_paths=uploads.FORM_PATH,
    )  # fmt: skip
    return app


# Young objects the collector lets accumulate before a collection (Python's default is 700).
YOUNG_GENERATION_THRESHOLD = 50_000


def keep_garbage_collection_off_requests() -> None:
    """Tune the cyclic garbage collector of a server process, once it has started.

    A list page builds tens of thousands of small dicts, lists and tuples. With Python's defaults
    that triggers dozens of young collections per request, and every few requests a full one
    that walks every object of the imported libraries (some 150,000, about 100 ms). Objects alive
    at start-up live as long as the process, so they are frozen out of all collections; and the
    young generation is collected only after `YOUNG_GENERATION_THRESHOLD` new objects, which one
    page seldom reaches before reference counting has freed it again.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *gc.get_threshold()[1:])


# ---- errors --------------------------------------------------------------------------------------


def _error_response(request: Request, status: int, code: str, message: str) -> Response:
    # Errors honour format= and human= but never fail on them: a bad format value is itself the error.
    xml = wants_xml(request, strict=False)
    try:
        human = bool(parse_bool("human", request.query_params.get("human")))
    except InvalidInput:
        human = False
    body = serialize(errors.envelope(code, message), xml=xml, human=human)
    return Response(body, status_code=status, media_type=XML_TYPE if xml else JSON_TYPE)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        message = "malformed JSON body" if error.get("type") == "json_invalid" else error.get("msg", "invalid")
        parts.append(f"{location}: {message}" if location else message)
    return "Invalid Input: " + "; ".join(parts)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.ApiError)
    async def _api_error(request: Request, exc: errors.ApiError) -> Response:
        response = _error_response(request, exc.status, exc.code, exc.message)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(InvalidInput)
    async def _invalid(request: Request, exc: InvalidInput) -> Response:
        family = errors.family_for_path(request.url.path)
        return _error_response(request, 400, family.invalid_input, f"Invalid Input: {exc.message}")

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        family = errors.family_for_path(request.url.path)
        return _error_response(request, 404, family.not_found, exc.message)

    @app.exception_handler(DataError)
    async def _unstorable(request: Request, exc: DataError) -> Response:
        # The database refused a value the request carried (PostgreSQL: a NUL character in text, a
        # number out of range): bad input, not a server fault.
        family = errors.family_for_path(request.url.path)
        return _error_response(request, 400, family.invalid_input, "Invalid Input: a value cannot be stored")

    @app.exception_handler(RequestValidationError)
    async def _unparsable(request: Request, exc: RequestValidationError) -> Response:
        family = errors.family_for_path(request.url.path)
        return _error_response(request, 400, family.invalid_input, _validation_message(exc))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        family = errors.family_for_path(request.url.path)
        if exc.status_code == 404:
            return _error_response(request, 404, errors.GENERIC.not_found, "Resource does not exist")
        if exc.status_code == 405:
            return _error_response(request, 405, errors.METHOD_NOT_ALLOWED, "Method not allowed")
        if exc.status_code == 413:
            return _error_response(request, 413, errors.BODY_TOO_LARGE, "Request body too large")
        if exc.status_code == 408:
            response = _error_response(request, 408, errors.BODY_TIMEOUT, "Request body not received in time")
            response.headers["Connection"] = "close"
            return response
        if 400 <= exc.status_code < 500:
            return _error_response(request, exc.status_code, family.invalid_input, f"Invalid Input: {exc.detail}")
        return _error_response(request, exc.status_code, errors.INTERNAL_ERROR, "Internal Error")

