"""How each object looks in responses.

A presenter turns a model into its final response dict for this request: every documented key in
the documented order, null values only with `show_null=true` (`ctx.obj` for each dict it builds,
`ctx.blob` for stored JSON), references through `ctx.ref` (see `render.py`). Each kind also
registers a loader so `expand=<kind>` and `expand_all=true` can embed it; loaders return None for
objects the caller may not see, which leaves the short reference in place. Presenters only read
attributes, so list pages hand them table rows instead of model objects (see `store/listing.py`).
"""

from __future__ import annotations

from typing import Any

from leaktrace.api.render import RenderContext, register_loader
from leaktrace.media.fetch.uris import mask_password
from leaktrace.store import backtraces as backtrace_service
from leaktrace.store.backtraces import ExtractedTag
from leaktrace.store.models import AccessRecord, Application, Backtrace, Codec, File, Job, Pipeline, Preset, Upload, User

MASKED = "*******"


def _stamps(ctx: RenderContext, obj: Any, collection: str, *, owner: bool = True) -> dict[str, Any]:
    """The keys every object ends with: version, user, created_at, updated_at, id, href."""
    out: dict[str, Any] = {"version": obj.version}
    if owner:
        out["user"] = ctx.ref("user", obj.user_id)
    out.update(created_at=obj.created_at, updated_at=obj.updated_at, id=obj.id, href=ctx.href(collection, obj.id))
    return out


# ---- jobs ----------------------------------------------------------------------------------------


def _output(ctx: RenderContext, output: dict[str, Any]) -> dict[str, Any]:
    thumbnails = output.get("thumbnails")
    zip_id = output.get("thumbnail_zip_file_id")
    return ctx.obj({
        "preset": ctx.ref("preset", output["preset_id"]),
        "file": ctx.ref("file", output.get("file_id")),
        "output_name": output.get("output_name"),
        "percentage_completed": output.get("percentage_completed", 0),
        "thumbnail_zip": {"file": ctx.ref("file", zip_id)} if zip_id else None,
        "thumbnails": None
        if thumbnails is None
        else [
            ctx.obj({
                "thumbnail_names": t.get("thumbnail_names"),
                "thumbnail_preset": t.get("thumbnail_preset"),
                "file": ctx.ref("file", t.get("file_id")),
            })
            for t in thumbnails
        ],
        "logos": ctx.blob(output.get("logos")),
        "settings": ctx.blob(output.get("settings")),
    })  # fmt: skip


def job(ctx: RenderContext, obj: Job) -> dict[str, Any]:
    """A job as `GET /jobs/ID` shows it."""
    submitted = obj.submitted_keys or ()
    options = obj.input_options or {}
    out: dict[str, Any] = {
        "pipeline": ctx.ref("pipeline", obj.pipeline_id),
        "application": ctx.ref("application", obj.application_id),
        "user_data": obj.user_data,
    }
    if "unique_custom_key" in submitted:
        out["unique_custom_key"] = obj.unique_custom_key
    job_input: dict[str, Any] = {
        "input_name": mask_password(obj.input_name),
        "force_container": options.get("force_container"),
        "force_aspect_ratio": options.get("force_aspect_ratio"),
        "force_framerate": options.get("force_framerate"),
        "force_interlaced": options.get("force_interlaced"),
    }
    if "input.start_time" in submitted:
        job_input["start_time"] = options.get("start_time")
    job_input["file"] = ctx.ref("file", obj.input_file_id, extra={"name": obj.input_file_name})
    out.update(
        input=ctx.obj(job_input),
        autograph=ctx.blob(obj.autograph),
        output_prefix=obj.output_prefix,
        playlists=ctx.blob(obj.playlists),
        outputs=[_output(ctx, output) for output in obj.outputs or ()],
        status=obj.status,
        percentage_completed=obj.percentage_completed,
        error_msg=obj.error_msg,
        error_code=obj.error_code,
        finished_at=obj.finished_at,
        version=obj.version,
        user=ctx.ref("user", obj.user_id),
        created_at=obj.created_at,
        updated_at=obj.updated_at,
    )
    if "title" in submitted:
        out["title"] = obj.title
    out.update(id=obj.id, href=ctx.href("jobs", obj.id))
    return ctx.obj(out)


# ---- backtraces ----------------------------------------------------------------------------------


def _access(ctx: RenderContext, record: AccessRecord) -> dict[str, Any]:
    return ctx.obj({
        "ip_address": record.ip_address,
        "ip_country": record.ip_country or "N/A",
        "ip_type": record.ip_type or "UNK",
        "user_agent": record.user_agent or "N/A",
        "accept_language": record.accept_language or "N/A",
        "first_accessed_at": record.first_accessed_at,
        "percentage_obtained": f"{round(record.percentage_obtained)}%",
        "highest_resolution": f"{record.highest_resolution}p" if record.highest_resolution else None,
        "streaming_only": "yes" if record.streaming_only else "no",
    })  # fmt: skip


def backtrace(ctx: RenderContext, obj: Backtrace, extracted: list[ExtractedTag] | None) -> dict[str, Any]:
    """A backtrace as `GET /backtraces/ID` shows it; `extracted` is None until it has a result."""
    return ctx.obj({
        "input": {"input_name": mask_password(obj.input_name)},
        "pipeline": ctx.ref("pipeline", obj.pipeline_id),
        "file": ctx.ref("file", obj.file_id),
        "job": ctx.ref("job", obj.job_id, href=False),
        "application": ctx.ref("application", obj.application_id, href=False),
        "extracted_data": None
        if extracted is None
        else [
            {"autograph_tag": tag.autograph_tag, "access_stats": [_access(ctx, r) for r in tag.access_records]}
            for tag in extracted
        ],
        "status": obj.status,
        "percentage_completed": obj.percentage_completed,
        "error_msg": obj.error_msg,
        "error_code": obj.error_code,
        "finished_at": obj.finished_at,
        **_stamps(ctx, obj, "backtraces"),
    })  # fmt: skip


def backtraces(ctx: RenderContext, objs: list[Backtrace]) -> list[dict[str, Any]]:
    """Present several backtraces, loading all their results in two queries."""
    extracted = backtrace_service.extracted_data(ctx.db, objs)
    return [
        backtrace(ctx, obj, extracted.get(obj.id, []) if obj.id in extracted or obj.status == "SUCCESS" else None)
        for obj in objs
    ]


def backtrace_created(ctx: RenderContext, obj: Backtrace) -> dict[str, Any]:
    """The receipt `POST /backtraces/` returns: the id, what was posted, and the state."""
    return ctx.obj({
        "id": obj.id,
        "pipeline": ctx.ref("pipeline", obj.pipeline_id),
        "input": {"input_name": mask_password(obj.input_name)},
        "status": obj.status,
        "percentage_completed": obj.percentage_completed,
        "error_msg": obj.error_msg,
        "error_code": obj.error_code,
        "finished_at": obj.finished_at,
        "version": obj.version,
        "user": ctx.ref("user", obj.user_id),
        "created_at": obj.created_at,
        "updated_at": obj.updated_at,
        "href": ctx.href("backtraces", obj.id),
    })  # fmt: skip


# ---- accounts ------------------------------------------------------------------------------------

BILLING_KEYS = ("company_name", "vat_id", "street", "city", "state", "country", "zip_code", "vat_id_verified", "company_email")
PROFILE_KEYS = ("website", "short_bio", "avatarURL", "profileURL")
SETTING_KEYS = ("location", "language", "time_zone", "show_location_flag", "newsletter_flag", "notification_email", "default_payment")


def _group(ctx: RenderContext, values: dict[str, Any] | None, keys: tuple[str, ...]) -> dict[str, Any]:
    values = values or {}
    return ctx.obj({key: values.get(key) for key in keys})


def user(ctx: RenderContext, obj: User) -> dict[str, Any]:
    """An account as `GET /users/ID` shows it; credentials are always masked."""
    return ctx.obj({
        "first_name": obj.first_name,
        "last_name": obj.last_name,
        "email": obj.email,
        "password": MASKED,
        "client_password_salt": MASKED,
        "name": obj.name,
        "billing_address": _group(ctx, obj.billing_address, BILLING_KEYS),
        "profile": _group(ctx, obj.profile, PROFILE_KEYS),
        "setting": _group(ctx, obj.setting, SETTING_KEYS),
        "confirmed_on": obj.confirmed_on,
        "changed_email_confirmed": obj.changed_email_confirmed,
        **_stamps(ctx, obj, "users", owner=False),
    })  # fmt: skip


def application(ctx: RenderContext, obj: Application) -> dict[str, Any]:
    """An application; its secret is never shown."""
    return ctx.obj({
        "name": obj.name,
        "client_id": obj.client_id,
        "scopes": [s for s in obj.scopes.split(",") if s],
        "enabled": obj.enabled,
        **_stamps(ctx, obj, "applications"),
    })  # fmt: skip


# ---- pipelines, files, presets, codecs -----------------------------------------------------------


def pipeline(ctx: RenderContext, obj: Pipeline) -> dict[str, Any]:
    """A pipeline with every field `POST /pipelines` accepts."""
    return ctx.obj({
        "name": obj.name,
        "description": obj.description,
        "cancel_timeout": obj.cancel_timeout,
        "default_object_timeout": obj.default_object_timeout,
        "enable_backtrace_pings": obj.enable_backtrace_pings,
        "input_download_dir": mask_password(obj.input_download_dir),
        "image_download_dir": mask_password(obj.image_download_dir),
        "download_options": ctx.blob(obj.download_options),
        "output_upload_dir": mask_password(obj.output_upload_dir),
        "image_upload_dir": mask_password(obj.image_upload_dir),
        "upload_options": ctx.blob(obj.upload_options),
        "store_options": ctx.blob(obj.store_options),
        "ping_urls": ctx.blob(obj.ping_urls),
        "file": ctx.ref("file", obj.file_id),
        **_stamps(ctx, obj, "pipelines"),
    })  # fmt: skip


def file(ctx: RenderContext, obj: File) -> dict[str, Any]:
    """A stored file, folder or archive."""
    return ctx.obj({
        "storage": obj.storage,
        "title": obj.title,
        "name": obj.name,
        "type": obj.type,
        "subtype": obj.subtype,
        "description": obj.description,
        "parents": ctx.blob(obj.parents),
        "job": ctx.ref("job", obj.job_id),
        "application": ctx.ref("application", obj.application_id),
        "pipeline": ctx.ref("pipeline", obj.pipeline_id),
        "autograph": obj.autograph,
        "container": obj.container,
        "mime_type": obj.mime_type,
        "md5_checksum": obj.md5_checksum,
        "duration": obj.duration,
        "size": obj.size,
        "size_on_disk": obj.size_on_disk,
        "video_tracks": ctx.blob(obj.video_tracks),
        "audio_tracks": ctx.blob(obj.audio_tracks),
        "subtitle_tracks": ctx.blob(obj.subtitle_tracks),
        "elements": ctx.blob(obj.elements),
        "finished_at": obj.finished_at,
        "expires_at": obj.expires_at,
        "user_data": obj.user_data,
        "uri": f"{ctx.base_url}/v1/files/downloads/?file_id={obj.id}",
        **_stamps(ctx, obj, "files"),
    })  # fmt: skip


def upload(ctx: RenderContext, obj: Upload, *, form_post_url: str, form_post_params: dict[str, str] | None) -> dict[str, Any]:
    """An upload (the reference's §2.9); the form's parameters are shown while it takes chunks."""
    return ctx.obj({
        "form_post_params": form_post_params,
        "form_post_url": form_post_url if form_post_params is not None else None,
        "status": obj.status,
        "nb_chunks": obj.nb_chunks,
        "storage_type": "intern",
        "object_key": obj.object_key,
        "pipeline": ctx.ref("pipeline", obj.pipeline_id),
        "file": ctx.ref("file", obj.id),
        "error_msg": obj.error_msg,
        "expires_at": obj.expires_at,
        "finished_at": obj.finished_at,
        **_stamps(ctx, obj, "files/uploads"),
    })  # fmt: skip


def _codec_choice(ctx: RenderContext, choice: dict[str, Any] | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    return ctx.obj({**ctx.blob(choice), "codec": ctx.ref("codec", (choice.get("codec") or {}).get("id"))})


def preset(ctx: RenderContext, obj: Preset) -> dict[str, Any]:
    """A system or custom preset; codec references expand like any other."""
    target = dict(ctx.blob(obj.target_format) or {})
    target["vcodec"] = _codec_choice(ctx, (obj.target_format or {}).get("vcodec"))
    target["acodec"] = _codec_choice(ctx, (obj.target_format or {}).get("acodec"))
    return ctx.obj({
        "name": obj.name,
        "description": obj.description,
        "type": obj.type,
        "target_format": ctx.obj(target),
        "settings": ctx.blob(obj.settings),
        **_stamps(ctx, obj, "presets", owner=obj.user_id is not None),
    })  # fmt: skip


def codec(ctx: RenderContext, obj: Codec) -> dict[str, Any]:
    """A system codec with its capabilities."""
    return ctx.obj({
        "name": obj.name,
        "description": obj.description,
        "type": obj.type,
        "passes": ctx.blob(obj.passes),
        "autograph": ctx.blob(obj.autograph),
        "profiles": ctx.blob(obj.profiles),
        **_stamps(ctx, obj, "codecs", owner=False),
    })  # fmt: skip


# ---- loaders for expand --------------------------------------------------------------------------


def _owned(ctx: RenderContext, model: type, object_id: str) -> Any:
    with ctx.db.read() as session:
        obj = session.get(model, object_id)
    return obj if obj is not None and obj.user_id == ctx.user_id else None


def _load_backtrace(ctx: RenderContext, object_id: str) -> dict[str, Any] | None:
    obj = _owned(ctx, Backtrace, object_id)
    return backtraces(ctx, [obj])[0] if obj is not None else None


def _load_user(ctx: RenderContext, object_id: str) -> dict[str, Any] | None:
    if object_id != ctx.user_id:
        return None
    with ctx.db.read() as session:
        obj = session.get(User, object_id)
    return user(ctx, obj) if obj else None


def _load_preset(ctx: RenderContext, object_id: str) -> dict[str, Any] | None:
    with ctx.db.read() as session:
        obj = session.get(Preset, object_id)
    if obj is None or (obj.type != "system" and obj.user_id != ctx.user_id):
        return None
    return preset(ctx, obj)


def _load_codec(ctx: RenderContext, object_id: str) -> dict[str, Any] | None:
    with ctx.db.read() as session:
        obj = session.get(Codec, object_id)
    return codec(ctx, obj) if obj else None


def _owned_loader(model: type, presenter: Any) -> Any:
    def load(ctx: RenderContext, object_id: str) -> dict[str, Any] | None:
        obj = _owned(ctx, model, object_id)
        return presenter(ctx, obj) if obj is not None else None

    return load


register_loader("job", _owned_loader(Job, job))
register_loader("application", _owned_loader(Application, application))
register_loader("pipeline", _owned_loader(Pipeline, pipeline))
register_loader("file", _owned_loader(File, file))
register_loader("backtrace", _load_backtrace)
register_loader("user", _load_user)
register_loader("preset", _load_preset)
register_loader("codec", _load_codec)
