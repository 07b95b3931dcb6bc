"""Fixtures for the API tests: one migrated database and app per session, a fresh account per test.

Every test works inside its own accounts, so tests never see each other's objects (that is the
tenant isolation the service promises) and can share one database. The whole suite runs once per
backend in `tests/api/backends.py`: SQLite, plus PostgreSQL when `LEAKTRACE_TEST_POSTGRES_URL` is set.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from leaktrace.api.app import create_app
from leaktrace.config import Settings
from leaktrace.store.db import Database, close_all
from tests.api import backends
from tests.api.helpers import Account, new_account

PUBLIC_URL = "https://api.xvid.com"  # the examples' host, so hrefs compare literally


@pytest.fixture(scope="session", params=backends.backends())
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for the default SQLite file in the data folder, or a scratch PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    url = backends.postgres_url()
    if url is None:
        pytest.fail(f"{backends.REQUIRE_ENV} is set but {backends.POSTGRES_URL_ENV} is not")
    with backends.scratch_postgres(url) as scratch:
        yield scratch


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory, database_url: str | None) -> Settings:
    data_dir: Path = tmp_path_factory.mktemp("var")
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        queue_url=None,
        public_url=PUBLIC_URL,
        secret_key=None,
        max_body_bytes=64 * 1024,
    )


@pytest.fixture(scope="session")
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app) as test_client:
        yield test_client
    close_all()


@pytest.fixture(scope="session")
def db(client: TestClient) -> Database:
    return client.app.state.db  # type: ignore[attr-defined]


@pytest.fixture
def account(client: TestClient, settings: Settings) -> Account:
    """A fresh account with an all-scopes application and a token."""
    return new_account(client, settings)


@pytest.fixture
def other_account(client: TestClient, settings: Settings) -> Account:
    """A second, unrelated account."""
    return new_account(client, settings)


# ---- CI guard: when PostgreSQL is required, the run fails unless API tests really passed on it ----

_postgres = {"expected": 0, "passed": 0}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    _postgres["expected"] = sum(1 for item in items if _on_postgres(item.nodeid))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed and _on_postgres(report.nodeid):
        _postgres["passed"] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if backends.postgres_required() and _postgres["expected"] and not _postgres["passed"]:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nno API test passed on PostgreSQL although {backends.REQUIRE_ENV} is set")  # noqa: T201


def _on_postgres(nodeid: str) -> bool:
    params = nodeid.rpartition("[")[2].rstrip("]")
    return "postgres" in params.split("-")
