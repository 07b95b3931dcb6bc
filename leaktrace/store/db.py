"""Engine and session setup, plus programmatic migrations.

SQLite runs in WAL mode with a busy timeout; read transactions start with a plain `BEGIN` and write
transactions with `BEGIN IMMEDIATE`, so two writers queue on the lock up front instead of failing
half-way with "database is locked". The same code runs on PostgreSQL (psycopg 3), where both kinds
are ordinary transactions.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class Database:
    """One database: an engine plus read and write session factories."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(self.url, connect_args={"timeout": 30, "check_same_thread": False})
            _install_sqlite_hooks(self.engine)
            write_engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        else:
            self.engine = create_engine(self.url, pool_pre_ping=True)
            write_engine = self.engine
        self._write_engine = write_engine
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(write_engine, expire_on_commit=False)

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; closing it ends the transaction and detaches loaded objects."""
        with self._reader() as session:
            yield session

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with self._writer() as session, session.begin():
            yield session

    def migrate(self) -> None:
        """Create or upgrade the schema to the newest migration.

        Safe when several processes start at once: the migration runs inside one write transaction
        (SQLite `BEGIN IMMEDIATE`, a PostgreSQL advisory lock), so later starters wait and then
        find the schema current.
        """
        with _MIGRATE_LOCK, self._write_engine.begin() as connection:
            if not self.is_sqlite:
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


_MIGRATE_LOCK = threading.Lock()
_MIGRATION_LOCK_KEY = 0x4C54_4D47  # any constant shared by every Leaktrace process


def alembic_config() -> Config:
    """The Alembic configuration for the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" event emit BEGIN itself instead of the driver's implicit one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # type: ignore[no-untyped-def]
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


_databases: dict[str, Database] = {}
_databases_lock = threading.Lock()


def open_database(url: str, *, migrate: bool = True) -> Database:
    """The shared `Database` for `url`, migrated on first open."""
    with _databases_lock:
        database = _databases.get(url)
        if database is None:
            database = Database(url)
            if migrate:
                database.migrate()
            _databases[url] = database
        return database


def close_all() -> None:
    """Dispose every database opened by `open_database` (tests use this between runs)."""
    with _databases_lock:
        for database in _databases.values():
            database.dispose()
        _databases.clear()
