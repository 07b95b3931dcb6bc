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
import os
from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"


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
