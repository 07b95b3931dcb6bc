"""OpenAPI descriptions of the real envelopes (served at `/v1/openapi.json`, shown at `/docs`).

Routes render their bodies themselves (JSON or XML, nulls dropped or kept), so FastAPI cannot infer
response schemas; these helpers describe them for the `responses=` argument of each route.
"""

from __future__ import annotations

from typing import Any

from leaktrace.api.errors import FAMILIES, GENERIC, INSUFFICIENT_SCOPE, INTERNAL_ERROR, INVALID_ACCESS_TOKEN

REFERENCE = {
    "type": "object",
    "description": "A reference; `expand=<key>` or `expand_all=true` embeds the full object instead.",
    "properties": {"id": {"type": "string", "pattern": "^[0-9a-f]{24}$"}, "href": {"type": "string", "format": "uri"}},
    "required": ["id"],
}
LINK = {"type": "object", "properties": {"href": {"type": "string", "format": "uri"}}, "required": ["href"]}
ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "error_code": {"type": "string", "pattern": "^0x[0-9a-f]{7}$"},
                "error_message": {"type": "string"},
            },
            "required": ["error_code", "error_message"],
        }
    },
    "required": ["error"],
}


def _content(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    json_media: dict[str, Any] = {"schema": schema}
    if example is not None:
        json_media["example"] = example
    return {
        "application/json": json_media,
        "application/xml": {"schema": {"type": "string", "description": "the same body as XML under <response>"}},
    }


def single_envelope(key: str, description: str = "The object", kind: str | None = None) -> dict[str, Any]:
    """`{"<key>": {...}}`; `kind` names the object schema when it differs from `key`."""
    schema = {"type": "object", "properties": {key: object_schema(kind or key)}, "required": [key]}
    return {"description": description, "content": _content(schema)}


def list_envelope(plural: str, kind: str | None = None) -> dict[str, Any]:
    """The paged list envelope of `kind` objects (default: `plural` without its final "s")."""
    schema = {
        "type": "object",
        "properties": {
            plural: {"type": "array", "items": object_schema(kind or plural[:-1])},
            "total": {"type": "integer"},
            "start": {"type": "integer"},
            "limit": {"type": "integer"},
            "first": LINK,
            "last": LINK,
            "next": LINK,
            "prev": LINK,
        },
        "required": [plural, "total", "start", "limit", "first", "last", "next", "prev"],
    }
    return {"description": "One page of objects with paging links that repeat the query", "content": _content(schema)}


def result_envelope() -> dict[str, Any]:
    """`{"result": {"status": "SUCCESS"}}` of a successful DELETE."""
    schema = {"type": "object", "properties": {"result": {"type": "object", "properties": {"status": {"type": "string"}}}}}
    return {"description": "Deleted", "content": _content(schema, {"result": {"status": "SUCCESS"}})}


def error(description: str, code: str, message: str) -> dict[str, Any]:
    """One error response with an example body."""
    example = {"error": {"error_code": code, "error_message": message}}
    return {"description": description, "content": _content(ERROR, example)}


def catalogue_envelope(key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """`{"<key>": [...]}`: a fixed catalogue listed whole; the schema is derived from `items`."""
    sample = {name: next((item[name] for item in items if item[name] is not None), None) for name in items[0]}
    schema = {"type": "object", "properties": {key: {"type": "array", "items": _schema_of(sample)}}, "required": [key]}
    return {"description": "Every entry of the catalogue", "content": _content(schema, {key: items[:2]})}


def error_responses(resource: str | None = None) -> dict[int | str, dict[str, Any]]:
    """The error responses a route of `resource` can give, with their codes."""
    family = FAMILIES.get(resource or "", GENERIC)
    return {
        400: error("Invalid input", family.invalid_input, "Invalid Input"),
        401: error("No access token", "0x0000002", "Authentication required"),
        403: error(
            f"Invalid or expired token ({INVALID_ACCESS_TOKEN}) or missing scope ({INSUFFICIENT_SCOPE})",
            INVALID_ACCESS_TOKEN,
            "Invalid access token",
        ),
        404: error("No such object in this account", family.not_found, family.not_found_message),
        500: error("Internal error", INTERNAL_ERROR, "Internal Error"),
    }


# ---- object schemas, derived from the presenters ------------------------------------------------
#
# Each kind is presented once from a representative sample (every optional part filled in), and the
# result's keys, nesting and value types become its schema, so the documentation cannot drift from
# what the presenters emit.


class Described:
    """A sample value whose schema is given rather than guessed from one value: a stored request
    part echoed back (a job's output settings take a percentage string or a number, per field)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema


def model_schema(model: type) -> dict[str, Any]:
    """The JSON schema of a pydantic request model with its `$defs` inlined, for a response that
    echoes what the model accepted."""
    schema = model.model_json_schema()  # type: ignore[attr-defined]
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(item) for key, item in node.items() if key not in ("title", "default")}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return inline(schema)


def _schema_of(value: Any) -> dict[str, Any]:
    from leaktrace.api.render import Ref

    if isinstance(value, Described):
        return value.schema
    if isinstance(value, Ref):
        return REFERENCE
    if isinstance(value, dict):
        return {"type": "object", "properties": {key: _schema_of(item) for key, item in value.items()}}
    if isinstance(value, list):
        return {"type": "array", "items": _schema_of(value[0]) if value else {}}
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    return {"description": "null until set"}


def _samples() -> dict[str, Any]:
    from leaktrace.api import present
    from leaktrace.api.render import RenderContext
    from leaktrace.api.routes.jobs import JobInput, OutputSettings
    from leaktrace.store.backtraces import ExtractedTag
    from leaktrace.store.models import AccessRecord, Application, Backtrace, Codec, File, Job, Pipeline, Preset, Upload, User

    # Every key shown, every reference kept as a `Ref` so it is described as a reference.
    ctx = RenderContext(base_url="https://leaktrace.example", db=None, user_id=None, show_null=True, expand_all=True)  # type: ignore[arg-type]
    some_id, now = "0" * 24, 1_700_000_000_000
    stamps = {"id": some_id, "version": 1, "created_at": now, "updated_at": now}
    output = {
        "preset_id": some_id, "output_name": "movie", "file_id": some_id, "percentage_completed": 100,
        "thumbnail_zip_file_id": some_id,
        "thumbnails": [{"thumbnail_names": "thumb_{resolution}", "thumbnail_preset": "thumbnails_small", "file_id": some_id}],
        "logos": [{"logo_image": "logo.svg", "logo_preset": "Logo15"}],
        "settings": Described(model_schema(OutputSettings)),
    }  # fmt: skip
    framerate = Described(model_schema(JobInput)["properties"]["force_framerate"])
    job = Job(
        **stamps, user_id=some_id, application_id=some_id, pipeline_id=some_id, user_data="batch", title="Title",
        unique_custom_key="key", submitted_keys=["title", "unique_custom_key", "input.start_time"], input_name="uploads/movie.mp4",
        input_options={"start_time": 0.0, "force_container": "mp4", "force_aspect_ratio": "16:9", "force_framerate": framerate,
                       "force_interlaced": False},
        input_file_id=some_id, input_file_name="movie.mp4", autograph={"watermark_strength": "light"}, output_prefix="x/",
        playlists=[{}], outputs=[output], status="SUCCESS", percentage_completed=100, error_msg="", error_code="", finished_at=now,
    )  # fmt: skip
    record = AccessRecord(
        ip_address="203.0.113.1", ip_country="Estonia", ip_type="UNK", user_agent="agent", accept_language="en",
        first_accessed_at=now, percentage_obtained=100.0, highest_resolution=720, streaming_only=False,
    )  # fmt: skip
    backtrace = Backtrace(
        **stamps, user_id=some_id, application_id=some_id, job_id=some_id, pipeline_id=some_id, input_name="leak.mp4",
        file_id=some_id, status="SUCCESS", percentage_completed=100, error_msg="", error_code="", finished_at=now,
    )  # fmt: skip
    user = User(**stamps, name="n", email="e", first_name="f", last_name="l", confirmed_on=now, changed_email_confirmed=True,
                billing_address={"vat_id_verified": True}, profile={}, setting={"show_location_flag": True})  # fmt: skip
    codec_choice = {"codec": {"id": some_id}, "profile": "High", "passes": 1, "caps": {"max_width": 1920}}
    return {
        "job": present.job(ctx, job),
        "backtrace": present.backtrace(ctx, backtrace, [ExtractedTag(autograph_tag="tag", access_records=[record])]),
        "backtrace_created": present.backtrace_created(ctx, backtrace),
        "user": present.user(ctx, user),
        "application": present.application(ctx, Application(**stamps, user_id=some_id, name="app", client_id=some_id, scopes="me", enabled=True)),
        "pipeline": present.pipeline(ctx, Pipeline(**stamps, user_id=some_id, name="p", description="d", cancel_timeout=0,
                                                   default_object_timeout=0, enable_backtrace_pings=False, input_download_dir="s3://",
                                                   image_download_dir="s3://", output_upload_dir="s3://", image_upload_dir="s3://",
                                                   download_options={}, upload_options={}, store_options={}, ping_urls={}, file_id=some_id)),
        "file": present.file(ctx, File(**stamps, user_id=some_id, application_id=some_id, pipeline_id=some_id, job_id=some_id,
                                       storage="intern", title="t", name="n", type="file", subtype="video", description="d",
                                       parents=[], autograph=True, container="mp4", mime_type="video/mp4", md5_checksum="0",
                                       duration=1, size=1, size_on_disk=1, video_tracks=[], audio_tracks=[], subtitle_tracks=[],
                                       elements=[], user_data="u", finished_at=now, expires_at=now)),
        "preset": present.preset(ctx, Preset(**stamps, user_id=some_id, type="custom", name="p", description="d",
                                             target_format={"extension": "mp4", "container": "mp4", "vcodec": codec_choice,
                                                            "acodec": codec_choice}, settings={})),
        "upload": present.upload(ctx, Upload(**stamps, user_id=some_id, pipeline_id=some_id, object_key="uploads/movie.mp4",
                                             storage_key="pipelines/x/uploads/movie.mp4", status="COMPLETED", nb_chunks=3,
                                             ip=0, expires_at=now, error_msg="", finished_at=now),
                                 form_post_url="https://leaktrace.example/v1/files/uploads/x/form",
                                 form_post_params={"name": "movie.mp4", "key": "pipelines/x/uploads/movie.mp4", "success_action_status": "201",
                                                   "filename": "", "chunk": "0", "chunks": "1", "policy": "…", "signature": "…"}),
        "codec": present.codec(ctx, Codec(**stamps, name="H.264", description="d", type="video", passes=[1, 2], autograph=[True],
                                          profiles=[{"name": "High", "containers": ["mp4"], "capabilities": {}}])),
    }  # fmt: skip


_SCHEMAS: dict[str, dict[str, Any]] = {}


def object_schema(kind: str) -> dict[str, Any]:
    """The schema of one presented object of `kind` (job, backtrace, user, pipeline, …)."""
    if not _SCHEMAS:
        _SCHEMAS.update({name: _schema_of(sample) for name, sample in _samples().items()})
    return _SCHEMAS[kind]
