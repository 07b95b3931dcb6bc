"""SQLAlchemy models for every table.

Conventions: ids are 24-hex strings (`leaktrace.ids`), times are epoch milliseconds in BIGINT
columns, free-form nested structures that are only ever read whole are JSON columns, and anything a
list filter or sort needs is a real column. Every owned object carries `user_id`: services filter
on it so one account never sees another's objects.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from leaktrace.ids import new_id, now_ms

ID = String(24)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, int: Integer}


class Stamped:
    """Columns every persisted object has: `id`, `version`, `created_at`, `updated_at`."""

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    updated_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)


class User(Stamped, Base):
    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    billing_address: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    profile: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    setting: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    confirmed_on: Mapped[int | None] = mapped_column(BigInteger)
    changed_email_confirmed: Mapped[bool | None] = mapped_column(Boolean)


class Application(Stamped, Base):
    """An API client of one account: `client_id` plus a secret kept encrypted with the server key."""

    __tablename__ = "applications"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    client_id: Mapped[str] = mapped_column(ID, unique=True)
    secret_encrypted: Mapped[str] = mapped_column(Text)
    scopes: Mapped[str] = mapped_column(String(500))  # comma-separated scopes tokens may carry
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class AccessToken(Base):
    """A bearer token; only its SHA-256 is stored."""

    __tablename__ = "access_tokens"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    scopes: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class Pipeline(Stamped, Base):
    __tablename__ = "pipelines"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_timeout: Mapped[int | None] = mapped_column(Integer)
    default_object_timeout: Mapped[int | None] = mapped_column(Integer)
    enable_backtrace_pings: Mapped[bool | None] = mapped_column(Boolean)
    input_download_dir: Mapped[str | None] = mapped_column(Text)
    image_download_dir: Mapped[str | None] = mapped_column(Text)
    output_upload_dir: Mapped[str | None] = mapped_column(Text)
    image_upload_dir: Mapped[str | None] = mapped_column(Text)
    download_options: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    upload_options: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    store_options: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    ping_urls: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    file_id: Mapped[str | None] = mapped_column(ID)  # the pipeline's root folder in the file tree


class Codec(Stamped, Base):
    """A system codec with its capabilities (arrays: [min, max] ranges or allowed values)."""

    __tablename__ = "codecs"

    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(10))  # video | audio
    passes: Mapped[list[Any]] = mapped_column(JSON)
    autograph: Mapped[list[Any]] = mapped_column(JSON)
    profiles: Mapped[list[Any]] = mapped_column(JSON)


class Preset(Stamped, Base):
    """A rendition recipe: system presets have no owner and cannot change."""

    __tablename__ = "presets"

    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(10))  # system | custom
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    target_format: Mapped[dict[str, Any]] = mapped_column(JSON)
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class File(Stamped, Base):
    """A stored object: job input, job output, upload, folder or archive."""

    __tablename__ = "files"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    application_id: Mapped[str | None] = mapped_column(ForeignKey("applications.id", ondelete="SET NULL"))
    pipeline_id: Mapped[str | None] = mapped_column(ForeignKey("pipelines.id", ondelete="SET NULL"), index=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    storage: Mapped[str] = mapped_column(String(20), default="intern")  # intern | extern
    storage_key: Mapped[str | None] = mapped_column(Text)  # where the bytes live in blob storage
    title: Mapped[str | None] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(10), default="file")  # file | folder | archive
    subtype: Mapped[str | None] = mapped_column(String(20))
    description: Mapped[str | None] = mapped_column(Text)
    parents: Mapped[list[Any] | None] = mapped_column(JSON)
    autograph: Mapped[bool | None] = mapped_column(Boolean)
    container: Mapped[str | None] = mapped_column(String(100))
    mime_type: Mapped[str | None] = mapped_column(String(100))
    md5_checksum: Mapped[str | None] = mapped_column(String(32))
    duration: Mapped[int | None] = mapped_column(BigInteger)
    size: Mapped[int | None] = mapped_column(BigInteger)
    size_on_disk: Mapped[int | None] = mapped_column(BigInteger)
    video_tracks: Mapped[list[Any] | None] = mapped_column(JSON)
    audio_tracks: Mapped[list[Any] | None] = mapped_column(JSON)
    subtitle_tracks: Mapped[list[Any] | None] = mapped_column(JSON)
    elements: Mapped[list[Any] | None] = mapped_column(JSON)
    user_data: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[int | None] = mapped_column(BigInteger)
    expires_at: Mapped[int | None] = mapped_column(BigInteger)


class Upload(Stamped, Base):
    """A file being brought in through the upload form (the reference's §2.9).

    The upload's id is its file's id; the row goes with the file. `expires_at` (epoch ms, None =
    never) is when an upload that has not completed is swept away with its parts.
    """

    __tablename__ = "uploads"
    __table_args__ = (Index("ix_uploads_status_expires", "status", "expires_at"),)

    id: Mapped[str] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    application_id: Mapped[str | None] = mapped_column(ForeignKey("applications.id", ondelete="SET NULL"))
    pipeline_id: Mapped[str | None] = mapped_column(ForeignKey("pipelines.id", ondelete="SET NULL"))
    object_key: Mapped[str] = mapped_column(Text)  # relative to the pipeline's folder, as the client gave it
    storage_key: Mapped[str] = mapped_column(Text)  # where the assembled file goes
    status: Mapped[str] = mapped_column(String(20), default="UPLOADING")  # UPLOADING | COMPLETING | COMPLETED | FAILURE
    nb_chunks: Mapped[int] = mapped_column(Integer, default=0)
    ip: Mapped[int | None] = mapped_column(BigInteger)  # uploader IPv4 as a 32-bit integer, as given
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    error_msg: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[int | None] = mapped_column(BigInteger)


class Job(Stamped, Base):
    """One title to import: input, outputs (JSON, ids of presets and produced files) and state."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_user_created", "user_id", "created_at", "id"),  # list order, ties by id
        Index("ix_jobs_user_status", "user_id", "status"),
    )

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    application_id: Mapped[str | None] = mapped_column(ForeignKey("applications.id", ondelete="SET NULL"))
    pipeline_id: Mapped[str | None] = mapped_column(ForeignKey("pipelines.id", ondelete="SET NULL"), index=True)
    user_data: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    unique_custom_key: Mapped[str | None] = mapped_column(String(200))
    # Optional keys (`title`, `unique_custom_key`) appear in responses only when submitted.
    submitted_keys: Mapped[list[Any]] = mapped_column(JSON, default=list)
    input_name: Mapped[str] = mapped_column(Text)
    input_options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    input_file_id: Mapped[str | None] = mapped_column(ID)
    input_file_name: Mapped[str | None] = mapped_column(Text)
    autograph: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    autograph_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    output_prefix: Mapped[str | None] = mapped_column(Text)
    playlists: Mapped[list[Any] | None] = mapped_column(JSON)
    outputs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(20), default="QUEUED")
    percentage_completed: Mapped[int] = mapped_column(Integer, default=0)
    error_msg: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(20))
    finished_at: Mapped[int | None] = mapped_column(BigInteger)
    # The worker running the job holds a lease it renews while alive; an expired lease means the
    # worker died, and the job is run again (up to a bounded number of attempts) or failed.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[int | None] = mapped_column(BigInteger, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class Backtrace(Stamped, Base):
    """A request to find which tag a leaked copy of a job's title carries."""

    __tablename__ = "backtraces"
    __table_args__ = (Index("ix_backtraces_user_created", "user_id", "created_at", "id"),)

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    application_id: Mapped[str | None] = mapped_column(ForeignKey("applications.id", ondelete="SET NULL"))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    pipeline_id: Mapped[str | None] = mapped_column(ForeignKey("pipelines.id", ondelete="SET NULL"))
    input_name: Mapped[str] = mapped_column(Text)
    file_id: Mapped[str | None] = mapped_column(ForeignKey("files.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(20), default="QUEUED")
    percentage_completed: Mapped[int] = mapped_column(Integer, default=0)
    error_msg: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(20))
    finished_at: Mapped[int | None] = mapped_column(BigInteger)


class BacktraceTag(Base):
    """One tag a finished backtrace extracted, with the detector's evidence for it."""

    __tablename__ = "backtrace_tags"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    backtrace_id: Mapped[str] = mapped_column(ForeignKey("backtraces.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)  # order within extracted_data
    autograph_tag: Mapped[str] = mapped_column(String(500), index=True)
    score: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class AccessRecord(Base):
    """Who obtained a tag's copy of a job's output, aggregated per (file, tag, ip, user agent)."""

    __tablename__ = "access_records"
    __table_args__ = (
        Index("ix_access_records_job_tag", "job_id", "tag"),
        Index("ix_access_records_file_tag", "file_id", "tag"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    application_id: Mapped[str | None] = mapped_column(ForeignKey("applications.id", ondelete="SET NULL"))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    file_id: Mapped[str | None] = mapped_column(ForeignKey("files.id", ondelete="SET NULL"))
    tag: Mapped[str] = mapped_column(String(500))
    ip_address: Mapped[str | None] = mapped_column(String(64))
    ip_country: Mapped[str | None] = mapped_column(String(100))
    ip_type: Mapped[str | None] = mapped_column(String(20))
    user_agent: Mapped[str | None] = mapped_column(Text)
    accept_language: Mapped[str | None] = mapped_column(Text)
    first_accessed_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    last_accessed_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    bytes_sent: Mapped[int] = mapped_column(BigInteger, default=0)
    percentage_obtained: Mapped[float] = mapped_column(Float, default=0.0)  # 0..100 of the title
    highest_resolution: Mapped[int | None] = mapped_column(Integer)  # frame height in pixels
    streaming_only: Mapped[bool] = mapped_column(Boolean, default=False)
    # The byte spans of the file sent to this client, disjoint and sorted: [[start, end), ...].
    sent_spans: Mapped[list[Any] | None] = mapped_column(JSON)


class ConsumedLink(Base):
    """A single-use signed link that has been used, kept until it expires (then it is refused anyway)."""

    __tablename__ = "consumed_links"

    signature: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)  # epoch milliseconds
