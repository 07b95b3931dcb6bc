"""The databases the API tests run on: SQLite always, PostgreSQL when a server is configured.

`LEAKTRACE_TEST_POSTGRES_URL` (e.g. `postgresql+psycopg://leaktrace:leaktrace@127.0.0.1/leaktrace_test`)
adds a PostgreSQL run of every API test, in a scratch database created next to the named one (the
role needs CREATEDB) and dropped at the end. With `LEAKTRACE_TEST_REQUIRE_POSTGRES=1`
(set by `.ci/run`) a missing URL or an unreachable server fails the run instead of silently
testing SQLite only.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_URL_ENV = "LEAKTRACE_TEST_POSTGRES_URL"
REQUIRE_ENV = "LEAKTRACE_TEST_REQUIRE_POSTGRES"


def postgres_url() -> str | None:
    """The configured PostgreSQL test URL, if any."""
    return os.environ.get(POSTGRES_URL_ENV) or None


def postgres_required() -> bool:
    """True when the run must include PostgreSQL (CI)."""
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes")


def backends() -> list[str]:
    """The backends to parametrise the API tests over."""
    return ["sqlite", "postgres"] if postgres_url() or postgres_required() else ["sqlite"]


@contextlib.contextmanager
def scratch_postgres(url: str) -> Iterator[str]:
    """A new, empty database next to the one `url` names, dropped afterwards; yields its URL.

    Each test session gets its own database, so sessions running at the same time on one server
    (several engineers, or CI jobs) never see or wipe each other's tables. Needs CREATEDB.
    """
    base = make_url(url)
    name = f"{base.database or 'leaktrace'}_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            # A natural-language collation (not the C order of a bare server) so tests catch
            # string sorts that would differ from SQLite's.
            connection.execute(
                text(f"CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'")
            )
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
