"""API list speed, each time a ratio against a plain SQLAlchemy query for the same rows.

With N jobs and N backtraces (default 100,000 each, one account) in SQLite, measures the median
wall time of

1. `GET /v1/jobs/?limit=1000&sort=created_at&direction=-1`
2. `GET /v1/backtraces/?extracted_data.autograph_tag=viewer-12&limit=1000&sort=created_at&direction=-1`
   (a partial tag match hitting about 1,100 backtraces)

and, in the same run and interleaved with them, of a plain SQLAlchemy query fetching the same page of
rows as ORM objects (same filter, order and limit). The API pays on top of that query for the token
lookup, the total count, the extracted tags of each backtrace, presenting, and JSON serialization.
Target: API time / query time <= 3.

Requests go through the real ASGI application in-process (Starlette's TestClient: the full
middleware, routing, auth and rendering stack, without sockets). The database is built once with
bulk inserts through the models and cached under `bench/out/api/`.

    .venv/bin/python -m bench.api            # 100,000 rows each, writes BENCHMARKS.md
    .venv/bin/python -m bench.api --quick    # 2,000 rows each, a few seconds, no write
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import Progress
from sqlalchemy import insert, select

from bench import report
from leaktrace.config import Settings
from leaktrace.ids import new_id
from leaktrace.store import accounts
from leaktrace.store.db import Database, close_all, open_database
from leaktrace.store.models import Backtrace, BacktraceTag, Base, Job

OUT = Path(__file__).resolve().parent / "out" / "api"
TARGET_RATIO = 3.0
PAGE = 1000
TAG_QUERY = "viewer-12"
DISTINCT_TAGS = 5000
PRESET_720P = "525ce63284aed52635e85e02"
JOBS_URL = f"/v1/jobs/?limit={PAGE}&sort=created_at&direction=-1"
BACKTRACES_URL = f"/v1/backtraces/?extracted_data.autograph_tag={TAG_QUERY}&limit={PAGE}&sort=created_at&direction=-1"


@dataclass(frozen=True)
class Dataset:
    """A cached database and the credentials of the account that owns every row."""

    data_dir: Path
    rows: int
    user_id: str
    client_id: str
    client_secret: str

    @property
    def settings(self) -> Settings:
        return Settings(data_dir=self.data_dir, database_url=None, queue_url=None, public_url="http://bench.local",
                        secret_key="bench-api-key", token_lifetime=3600)  # fmt: skip


def _schema_signature() -> list[list[str]]:
    # A cached database is reused only while the tables still have the same columns.
    return [[table.name, *sorted(table.columns.keys())] for table in Base.metadata.sorted_tables]


def dataset(rows: int, *, rebuild: bool = False) -> Dataset:
    """The cached database with `rows` jobs and `rows` backtraces, built if missing or stale."""
    data_dir = OUT / f"rows-{rows}"
    meta_path = data_dir / "meta.json"
    if meta_path.exists() and not rebuild:
        meta = json.loads(meta_path.read_text())
        if meta.get("schema") == _schema_signature():
            return Dataset(data_dir=data_dir, rows=rows, **meta["account"])
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    built = _build(data_dir, rows)
    meta_path.write_text(json.dumps({"schema": _schema_signature(), "account": built}))
    return Dataset(data_dir=data_dir, rows=rows, **built)


def _build(data_dir: Path, rows: int) -> dict[str, str]:
    settings = Dataset(data_dir=data_dir, rows=rows, user_id="", client_id="", client_secret="").settings
    db = open_database(settings.resolved_database_url)
    user = accounts.create_user(db, name="bench", email="bench@localhost")
    app, secret = accounts.create_application(
        db, settings.fernet(), user_id=user.id, name="bench", scopes=["mediahub", "autograph"]
    )
    with db.read() as session:
        from leaktrace.store.models import Pipeline

        pipeline_id = session.scalars(select(Pipeline.id).where(Pipeline.user_id == user.id)).one()
    start_ms = 1_700_000_000_000
    chunk = 10_000
    job_ids = [new_id() for _ in range(rows)]
    with Progress(transient=True) as progress:
        task = progress.add_task(f"inserting {rows:,} jobs and {rows:,} backtraces", total=2 * rows)
        for first in range(0, rows, chunk):
            with db.write() as session:
                session.execute(insert(Job), [_job(job_ids[i], i, user.id, app.id, pipeline_id, start_ms)
                                              for i in range(first, min(rows, first + chunk))])  # fmt: skip
            progress.advance(task, min(chunk, rows - first))
        for first in range(0, rows, chunk):
            backtraces, tags = [], []
            for i in range(first, min(rows, first + chunk)):
                backtrace_id = new_id()
                done = i % 2 == 0  # half have a result with one extracted tag
                backtraces.append(_backtrace(backtrace_id, i, job_ids[i], user.id, app.id, pipeline_id, start_ms, done))
                if done:
                    tags.append({"id": new_id(), "backtrace_id": backtrace_id, "position": 0,
                                 "autograph_tag": f"viewer-{(i // 2) % DISTINCT_TAGS}", "score": 12.5, "details": None})  # fmt: skip
            with db.write() as session:
                session.execute(insert(Backtrace), backtraces)
                session.execute(insert(BacktraceTag), tags)
            progress.advance(task, len(backtraces))
    close_all()
    return {"user_id": user.id, "client_id": app.client_id, "client_secret": secret}


def _job(job_id: str, i: int, user_id: str, app_id: str, pipeline_id: str, start_ms: int) -> dict[str, Any]:
    created = start_ms + i * 1000
    finished = i % 3 != 0
    return {
        "id": job_id, "version": 1, "created_at": created, "updated_at": created + 500,
        "user_id": user_id, "application_id": app_id, "pipeline_id": pipeline_id,
        "user_data": f"batch-{i % 100}", "title": None, "unique_custom_key": None, "submitted_keys": [],
        "input_name": f"uploads/title-{i}/master.mp4", "input_file_name": "master.mp4", "input_file_id": new_id(),
        "input_options": {"start_time": None, "force_container": None, "force_aspect_ratio": None,
                          "force_framerate": None, "force_interlaced": None},
        "autograph": {"watermark_strength": "light"}, "autograph_enabled": True,
        "output_prefix": f"{job_id}/", "playlists": None,
        "outputs": [{"preset_id": PRESET_720P, "output_name": "master", "file_id": new_id() if finished else None,
                     "percentage_completed": 100 if finished else 0, "thumbnail_zip_file_id": None,
                     "thumbnails": None, "logos": None, "settings": None}],
        "status": "SUCCESS" if finished else "QUEUED", "percentage_completed": 100 if finished else 0,
        "error_msg": None, "error_code": None, "finished_at": created + 400 if finished else None,
    }  # fmt: skip


def _backtrace(backtrace_id: str, i: int, job_id: str, user_id: str, app_id: str, pipeline_id: str,
               start_ms: int, done: bool) -> dict[str, Any]:  # fmt: skip
    created = start_ms + i * 1000 + 7
    return {
        "id": backtrace_id, "version": 1, "created_at": created, "updated_at": created,
        "user_id": user_id, "application_id": app_id, "job_id": job_id, "pipeline_id": pipeline_id,
        "input_name": f"uploads/leaks/{i}.mp4", "file_id": None,
        "status": "SUCCESS" if done else "QUEUED", "percentage_completed": 100 if done else 0,
        "error_msg": None, "error_code": None, "finished_at": created + 900 if done else None,
    }  # fmt: skip


# ---- measuring -----------------------------------------------------------------------------------


def _jobs_query(db: Database, user_id: str) -> Callable[[], int]:
    def run() -> int:
        with db.read() as session:
            stmt = (select(Job).where(Job.user_id == user_id)
                    .order_by(Job.created_at.desc(), Job.id.desc()).limit(PAGE))  # fmt: skip
            return len(session.scalars(stmt).all())

    return run


def _backtraces_query(db: Database, user_id: str) -> Callable[[], int]:
    def run() -> int:
        with db.read() as session:
            matching = select(BacktraceTag.backtrace_id).where(BacktraceTag.autograph_tag.icontains(TAG_QUERY))
            stmt = (select(Backtrace).where(Backtrace.user_id == user_id, Backtrace.id.in_(matching))
                    .order_by(Backtrace.created_at.desc(), Backtrace.id.desc()).limit(PAGE))  # fmt: skip
            return len(session.scalars(stmt).all())

    return run


def _timed(call: Callable[[], Any]) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def measure(data: Dataset, *, rounds: int) -> list[dict[str, Any]]:
    """Median API and query times (seconds) and their ratio for both lists."""
    from fastapi.testclient import TestClient

    from leaktrace.api.app import create_app

    settings = data.settings
    app = create_app(settings)
    db: Database = app.state.db
    results = []
    with TestClient(app) as client:
        response = client.post("/v1/oauth2/token/", data={"grant_type": "client_credentials", "client_id": data.client_id,
                                                          "client_secret": data.client_secret})  # fmt: skip
        response.raise_for_status()
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        cases = [
            ("jobs", JOBS_URL, "jobs", _jobs_query(db, data.user_id)),
            ("backtraces (tag filter)", BACKTRACES_URL, "backtraces", _backtraces_query(db, data.user_id)),
        ]
        for name, url, plural, query in cases:

            def api_call(url: str = url, plural: str = plural) -> int:
                reply = client.get(url, headers=headers)
                reply.raise_for_status()
                return len(reply.json()[plural])

            api_rows, query_rows = api_call(), query()  # warm caches and check both see the same page
            if api_rows != query_rows:
                raise RuntimeError(f"{name}: the API returned {api_rows} rows, the query {query_rows}")
            total = client.get(url, headers=headers).json()["total"]
            api_times, query_times = [], []
            for _ in range(rounds):  # interleaved, so load from other processes hits both alike
                api_times.append(_timed(api_call))
                query_times.append(_timed(query))
            api_s, query_s = statistics.median(api_times), statistics.median(query_times)
            results.append({"list": name, "url": url, "rows": api_rows, "total": total, "api_s": api_s,
                            "query_s": query_s, "ratio": api_s / query_s})  # fmt: skip
    close_all()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 rows each, fewer rounds, no BENCHMARKS.md write")
    parser.add_argument("--rows", type=int, default=None, help="jobs and backtraces each (default 100,000)")
    parser.add_argument("--rounds", type=int, default=None, help="timed requests per list (default 21)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached database")
    parser.add_argument("--no-write", action="store_true", help="print only, do not touch BENCHMARKS.md")
    parser.add_argument("--json-out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    rows = args.rows or (2_000 if args.quick else 100_000)
    rounds = args.rounds or (5 if args.quick else 21)

    began = time.perf_counter()
    data = dataset(rows, rebuild=args.rebuild)
    print(f"database: {data.data_dir / 'leaktrace.db'} ({rows:,} jobs, {rows:,} backtraces), "
          f"ready in {time.perf_counter() - began:.1f} s", file=sys.stderr)  # fmt: skip
    results = measure(data, rounds=rounds)
    failed = [r for r in results if r["ratio"] > TARGET_RATIO]

    table = report.markdown_table(
        ["list", "rows returned / matching", "API median ms", "plain query median ms", "API / query", f"<= {TARGET_RATIO:g}"],
        [[r["list"], f"{r['rows']:,} / {r['total']:,}", f"{r['api_s'] * 1000:.1f}", f"{r['query_s'] * 1000:.1f}",
          f"{r['ratio']:.2f}", "yes" if r["ratio"] <= TARGET_RATIO else "NO"] for r in results],
    )  # fmt: skip
    body = (
        f"{rows:,} jobs and {rows:,} backtraces of one account in SQLite (WAL); median of {rounds} requests per "
        f"list, each interleaved with the plain SQLAlchemy query for the same page of rows (ORM objects, same "
        f"filter, order and limit). Requests go in-process through the ASGI app (Starlette TestClient: "
        f"middleware, auth, routing, rendering; no sockets). URLs: `{JOBS_URL}` and `{BACKTRACES_URL}`.\n\n{table}"
    )
    print(body)
    if args.json_out:
        args.json_out.write_text(json.dumps({"rows": rows, "rounds": rounds, "target": TARGET_RATIO, "results": results}, indent=1))
    if not args.quick and not args.no_write:
        report.write_section("api", title="API lists against plain queries", body=body,
                             command=report.command_line("bench.api", argv))  # fmt: skip
    if failed:
        print(f"\nFAILED: API / query above {TARGET_RATIO:g} for " + ", ".join(r["list"] for r in failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
