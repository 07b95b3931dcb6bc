"""Database setup, migrations, server key and queue selection."""

from __future__ import annotations

import threading
from pathlib import Path

from huey import RedisHuey, SqliteHuey
from sqlalchemy import inspect, text

from leaktrace.config import Settings
from leaktrace.ids import is_id, new_id
from leaktrace.store import accounts
from leaktrace.store.db import Database
from leaktrace.store.models import Base, User
from leaktrace.tasks.queue import make_queue


def test_fresh_sqlite_database_is_migrated_in_wal_mode(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    db.migrate()
    db.migrate()  # idempotent
    with db.read() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert session.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0005"
        assert session.execute(text("SELECT count(*) FROM codecs")).scalar() == 3
        assert session.execute(text("SELECT count(*) FROM presets WHERE type = 'system'")).scalar() == 4
    assert set(Base.metadata.tables) <= set(inspect(db.engine).get_table_names())
    db.dispose()


def test_write_transactions_begin_immediate(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'b.db'}")
    db.migrate()
    statements: list[str] = []
    from sqlalchemy import event

    event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    accounts.create_user(db, name="w")
    with db.read() as session:
        session.execute(text("SELECT 1"))
    assert "BEGIN IMMEDIATE" in statements and "BEGIN DEFERRED" in statements
    db.dispose()


def test_concurrent_writers_do_not_fail(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    db.migrate()
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(10):
                with db.write() as session:
                    session.add(User(name=f"{n}-{i}"))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with db.read() as session:
        assert session.execute(text("SELECT count(*) FROM users")).scalar() == 40
    db.dispose()


def test_server_key_is_generated_once_and_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    secret = settings.fernet().encrypt(b"s3cret")
    key_file = tmp_path / "var" / "secret.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert Settings(data_dir=tmp_path / "var").fernet().decrypt(secret) == b"s3cret"
    given = Settings(data_dir=tmp_path / "other", secret_key="operator chosen")
    assert Settings(data_dir=tmp_path / "x", secret_key="operator chosen").fernet().decrypt(given.fernet().encrypt(b"a")) == b"a"
    assert not (tmp_path / "other" / "secret.key").exists()


def test_queue_selection(tmp_path: Path) -> None:
    assert isinstance(make_queue(Settings(data_dir=tmp_path)).huey, SqliteHuey)
    redis_queue = make_queue(Settings(data_dir=tmp_path, queue_url="redis://127.0.0.1:6390/0"))
    assert isinstance(redis_queue.huey, RedisHuey) and not redis_queue.is_embedded


def test_ids() -> None:
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(is_id(i) for i in ids)
    assert not is_id("552B87A814EAB3A29D1B3D90") and not is_id("abc")


def test_migrations_match_the_models(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate()
    with db.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    db.dispose()


def test_processes_starting_together_migrate_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'race.db'}"
    code = f"from leaktrace.store.db import Database; Database({url!r}).migrate()"
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert [status for status, _ in results] == [0, 0, 0], results
