"""Settings from `LEAKTRACE_*` environment variables.

Every location defaults to a place under `LEAKTRACE_DATA_DIR` (default `./var`), so one variable
moves a whole installation. The server key encrypts application secrets at rest; when
`LEAKTRACE_SECRET_KEY` is not given, one is generated on first use and kept in
`<data dir>/secret.key`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import ipaddress
import os
from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024**3  # 20 GiB: a long mezzanine master, far beyond any delivery rendition
GIB = 1024**3
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Settings(BaseSettings):
    """Runtime configuration; each field is read from `LEAKTRACE_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="LEAKTRACE_", extra="ignore")

    data_dir: Path = Path("./var")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in the data dir")
    queue_url: str | None = Field(default=None, description="redis://… for Redis; default SQLite in the data dir")
    storage_url: str | None = Field(default=None, description="blob storage; default <data dir>/media")
    public_url: str | None = Field(default=None, description="base of every href and link; default: where serve listens")
    secret_key: str | None = Field(default=None, description="server key; generated under the data dir if unset")
    token_lifetime: int = Field(default=3600, gt=0, description="default access-token lifetime, seconds")
    token_max_lifetime: int = Field(default=30 * 24 * 3600, gt=0, description="longest lifetime a client may ask for")
    max_body_bytes: int = Field(default=1024 * 1024, gt=0, description="largest accepted request body")
    body_idle_timeout_s: float = Field(default=10.0, gt=0, description="longest pause while a request body arrives (408 after)")
    worker_threads: int = Field(default=2, ge=1, description="consumer threads inside `serve`, or per `worker`")
    job_lease_s: float = Field(
        default=60.0, gt=0, description="a running job's lease, seconds: a worker silent this long is taken as dead"
    )
    job_max_attempts: int = Field(default=3, ge=1, description="runs of a job whose workers died, before it fails")
    prepare_workers: int | None = Field(default=None, ge=1, description="processes per AutoGraph prepare; default: cores")
    max_upload_bytes: int = Field(default=DEFAULT_MAX_UPLOAD_BYTES, gt=0, description="largest file one upload may bring in")

    # Server-side fetches (job inputs, logos) and pings; see docs/api-decisions.md.
    fetch_allow_networks: str = Field(
        default="", description="comma-separated CIDR networks fetches and pings may reach although not public"
    )
    fetch_local_dirs: str | None = Field(
        default=None, description="comma-separated folders file:// inputs may come from; default <data dir>/inbox"
    )
    fetch_s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint for s3:// URIs without ?endpoint=; default AWS"
    )
    fetch_certificate_check: bool = Field(default=True, description="verify TLS certificates of https fetches")
    fetch_connect_timeout: float = Field(default=10.0, gt=0, description="connect timeout of a fetch, seconds")
    fetch_read_timeout: float = Field(default=60.0, gt=0, description="longest silence while fetching, seconds")
    fetch_max_bytes: int = Field(default=64 * GIB, gt=0, description="largest object a fetch copies")
    ping_attempts: int = Field(default=8, ge=1, description="deliveries tried per ping before giving up")
    ping_retry_delay: float = Field(default=30.0, gt=0, description="delay before the first retry, seconds; doubles")
    ping_timeout: float = Field(default=10.0, gt=0, description="time a ping receiver has to answer, seconds")

    trusted_proxies: str = Field(
        default="", description="comma-separated CIDR networks of reverse proxies whose X-Forwarded-For is believed"
    )

    @field_validator("fetch_allow_networks", "trusted_proxies")
    @classmethod
    def _check_networks(cls, value: str) -> str:
        _parse_networks(value)  # fail at start-up, not at the first fetch
        return value

    @property
    def allowed_networks(self) -> tuple[IPNetwork, ...]:
        """The networks of `LEAKTRACE_FETCH_ALLOW_NETWORKS`, parsed."""
        return _parse_networks(self.fetch_allow_networks)

    @property
    def trusted_proxy_networks(self) -> tuple[IPNetwork, ...]:
        """The networks of `LEAKTRACE_TRUSTED_PROXIES`, parsed."""
        return _parse_networks(self.trusted_proxies)

    @property
    def local_input_dirs(self) -> tuple[Path, ...]:
        """Folders `file://` inputs may come from: the listed ones, or `<data dir>/inbox` by default."""
        if self.fetch_local_dirs is None:
            return (self.data_dir / "inbox",)
        return tuple(Path(part.strip()) for part in self.fetch_local_dirs.split(",") if part.strip())

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to `<data dir>/leaktrace.db`."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'leaktrace.db').resolve()}"

    @property
    def resolved_queue_url(self) -> str:
        """The queue URL, defaulting to `sqlite:///<data dir>/queue.db`."""
        if self.queue_url:
            return self.queue_url
        return f"sqlite:///{(self.data_dir / 'queue.db').resolve()}"

    @property
    def resolved_storage_url(self) -> str:
        """The blob storage URL, defaulting to `file://<data dir>/media`."""
        if self.storage_url:
            return self.storage_url
        return f"file://{(self.data_dir / 'media').resolve()}"

    @property
    def base_url(self) -> str:
        """The public URL without a trailing slash."""
        return (self.public_url or DEFAULT_PUBLIC_URL).rstrip("/")

    def ensure_data_dir(self) -> Path:
        """Create the data directory (mode 700) and its SQLite files (mode 600) if needed.

        The database holds encrypted secrets and the queue holds job data: only the service's
        user may read them. SQLite gives its -wal and -shm files the database file's mode.
        """
        if not self.data_dir.is_dir():
            self.data_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        for url in (self.resolved_database_url, self.resolved_queue_url):
            if url.startswith("sqlite:///"):
                _create_private(Path(url.removeprefix("sqlite:///")))
        return self.data_dir

    def fernet(self) -> Fernet:
        """The cipher for application secrets, built from the server key."""
        return _fernet_for(self.secret_key, self.data_dir.resolve())

    def signing_key(self, purpose: str) -> bytes:
        """A 32-byte HMAC key for one purpose (`"upload-form"`, …), derived from the server key.

        HMAC-SHA256 of the purpose's label under the server key: each feature signs with its own
        key, so a signature made for one purpose never verifies for another, and none is the
        key that encrypts secrets at rest.
        """
        return _signing_key_for(self.secret_key, self.data_dir.resolve(), purpose)


def _parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """`10.0.0.0/8, ::1/128` as networks; host bits may be set (`127.0.0.1/8` means `127.0.0.0/8`)."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def _create_private(path: Path) -> None:
    """Create `path` empty with mode 600 unless it exists (its mode then stays the operator's)."""
    path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    except FileExistsError:
        pass


@functools.lru_cache(maxsize=8)
def _fernet_for(secret_key: str | None, data_dir: Path) -> Fernet:
    if secret_key:
        # Any operator-chosen string works: it is stretched into the 32-byte key Fernet needs.
        digest = hashlib.sha256(secret_key.encode()).digest()
        return Fernet(base64.urlsafe_b64encode(digest))
    return Fernet(_load_or_create_key_file(data_dir / "secret.key"))


@functools.lru_cache(maxsize=32)
def _signing_key_for(secret_key: str | None, data_dir: Path, purpose: str) -> bytes:
    server_key = secret_key.encode() if secret_key else _load_or_create_key_file(data_dir / "secret.key")
    return hmac.new(server_key, f"leaktrace signing key: {purpose}".encode(), hashlib.sha256).digest()


def _load_or_create_key_file(path: Path) -> bytes:
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    key = Fernet.generate_key()
    # O_EXCL: when two processes start at once, exactly one writes the key and both read it.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
    return key


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
