"""API list speed, each time a ratio against a plain SQLAlchemy query for the same rows.

With N jobs and N backtraces (default 100,000 each, one account) in SQLite, measures the median
wall time of

1. `GET /v1/jobs/?limit=1000&sort=created_at&direction=-1`
2. `GET /v1/backtraces/?extracted_data.autograph_tag=viewer-12&limit=1000&sort=created_at&direction=-1`
   (a partial tag match hitting about 1,100 backtraces)

and, in the same run and interleaved with them, of a plain SQLAlchemy query fetching the same page of
table rows (same filter, order and limit; also measured returning ORM objects, for context). The API pays on top of that query for the token
lookup, the total count, the extracted tags of each backtrace, presenting, and JSON serialization.
Target: API time / query time <= 3.

Requests go to a real `leaktrace serve` (uvicorn) on a loopback port, in its own process, over one
keep-alive connection; the query runs in this process on the same SQLite file. The database is built
once with bulk inserts through the models and cached under `bench/out/api/`.

    .venv/bin/python -m bench.api            # 100,000 rows each, writes BENCHMARKS.md
    .venv/bin/python -m bench.api --quick    # 2,000 rows each, a few seconds, no write
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.progress import Progress
from sqlalchemy import insert, select

from bench import report
from leaktrace.config import Settings
from leaktrace.ids import new_id
from leaktrace.store import accounts
from leaktrace.store.db import Database, close_all, open_database
from leaktrace.store.models import Backtrace, BacktraceTag, Base, Job, Pipeline

OUT = Path(__file__).resolve().parent / "out" / "api"
TARGET_RATIO = 3.0
SECRET_KEY = "bench-api-key"  # the server key of the cached databases (encrypts the app secret)
PUBLIC_URL = "http://bench.local"
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
        return Settings(data_dir=self.data_dir, database_url=None, queue_url=None, public_url=PUBLIC_URL,
                        secret_key=SECRET_KEY, token_lifetime=3600)  # fmt: skip


def _schema_signature() -> list[list[str]]:
    # A cached database is reused only while the tables still have the same columns.
    return [[table.name, *sorted(table.columns.keys())] for table in Base.metadata.sorted_tables]


def dataset(rows: int, *, rebuild: bool = False, cache_dir: Path = OUT) -> Dataset:
    """The cached database with `rows` jobs and `rows` backtraces, built if missing or stale."""
    data_dir = cache_dir / f"rows-{rows}"
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


# The verdict's baseline selects table rows (JSON columns decoded): the cheapest plain way to get the
# page, and the way the list services fetch it, so the ratio is what the API adds on top of the same
# fetch. The same query returning ORM objects is measured too, for context.


def _jobs_query(db: Database, user_id: str, *, objects: bool = False) -> Callable[[], int]:
    def run() -> int:
        with db.read() as session:
            stmt = (select(Job if objects else Job.__table__).where(Job.user_id == user_id)
                    .order_by(Job.created_at.desc(), Job.id.desc()).limit(PAGE))  # fmt: skip
            return len((session.scalars(stmt) if objects else session.execute(stmt)).all())

    return run


def _backtraces_query(db: Database, user_id: str, *, objects: bool = False) -> Callable[[], int]:
    def run() -> int:
        with db.read() as session:
            matching = select(BacktraceTag.backtrace_id).where(BacktraceTag.autograph_tag.icontains(TAG_QUERY))
            stmt = (select(Backtrace if objects else Backtrace.__table__)
                    .where(Backtrace.user_id == user_id, Backtrace.id.in_(matching))
                    .order_by(Backtrace.created_at.desc(), Backtrace.id.desc()).limit(PAGE))  # fmt: skip
            return len((session.scalars(stmt) if objects else session.execute(stmt)).all())

    return run


def _timed(call: Callable[[], Any]) -> tuple[float, float]:
    """Wall time and process CPU time (all threads: the app serves requests in worker threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def served(data: Dataset) -> Iterator[tuple[str, int]]:
    """`leaktrace serve` on a free loopback port over the dataset; yields its base URL and pid."""
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEAKTRACE_")}
    env.update(LEAKTRACE_DATA_DIR=str(data.data_dir), LEAKTRACE_SECRET_KEY=SECRET_KEY, LEAKTRACE_PUBLIC_URL=PUBLIC_URL)
    cmd = [sys.executable, "-m", "leaktrace.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--no-embedded-worker"]
    with open(data.data_dir / "serve.log", "w") as log:
        server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base + "/v1/codecs/", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"leaktrace serve did not start; see {data.data_dir / 'serve.log'}")
            time.sleep(0.2)
        yield base, server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)


def measure(data: Dataset, *, rounds: int) -> list[dict[str, Any]]:
    """Median API and query times (seconds) and their ratio for both lists, plus CPU per call."""
    db = open_database(data.settings.resolved_database_url)
    results = []
    with served(data) as (base, pid), httpx.Client(base_url=base, timeout=300) as client:
        response = client.post("/v1/oauth2/token/", data={"grant_type": "client_credentials", "client_id": data.client_id,
                                                          "client_secret": data.client_secret})  # fmt: skip
        response.raise_for_status()
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        cases = [
            ("jobs", JOBS_URL, "jobs", _jobs_query(db, data.user_id), _jobs_query(db, data.user_id, objects=True)),
            ("backtraces (tag filter)", BACKTRACES_URL, "backtraces", _backtraces_query(db, data.user_id),
             _backtraces_query(db, data.user_id, objects=True)),
        ]  # fmt: skip
        for name, url, plural, query, orm_query in cases:

            def api_call(url: str = url) -> bytes:
                reply = client.get(url, headers=headers)
                reply.raise_for_status()
                return reply.content  # the client's JSON parsing is not the API's cost

            first = json.loads(api_call())  # warms caches; both must see the same page
            api_rows, query_rows, total = len(first[plural]), query(), first["total"]
            if api_rows != query_rows:
                raise RuntimeError(f"{name}: the API returned {api_rows} rows, the query {query_rows}")
            api_times, query_times, orm_times, server_cpu = [], [], [], 0.0
            for _ in range(rounds):  # interleaved, so load from other processes hits all alike
                before = _cpu_seconds(pid)
                api_times.append(_timed(api_call)[0])
                server_cpu += _cpu_seconds(pid) - before
                query_times.append(_timed(query))
                orm_times.append(_timed(orm_query)[0])
            api_s = statistics.median(api_times)
            query_s = statistics.median(t[0] for t in query_times)
            orm_s = statistics.median(orm_times)
            api_cpu, query_cpu = server_cpu / rounds, statistics.fmean(t[1] for t in query_times)
            results.append({"list": name, "url": url, "rows": api_rows, "total": total, "api_s": api_s,
                            "query_s": query_s, "ratio": api_s / query_s, "orm_query_s": orm_s,
                            "orm_ratio": api_s / orm_s, "api_cpu_s": api_cpu, "query_cpu_s": query_cpu,
                            "cpu_ratio": api_cpu / query_cpu if query_cpu else None})  # fmt: skip
    close_all()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 rows each, fewer rounds, no BENCHMARKS.md write")
    parser.add_argument("--rows", type=int, default=None, help="jobs and backtraces each (default 100,000)")
    parser.add_argument("--rounds", type=int, default=None, help="timed requests per list (default 31)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached database")
    parser.add_argument("--cache-dir", type=Path, default=OUT, help=f"where databases are cached (default {OUT})")
    parser.add_argument("--no-write", action="store_true", help="print only, do not touch BENCHMARKS.md")
    parser.add_argument("--json-out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    rows = args.rows or (2_000 if args.quick else 100_000)
    rounds = args.rounds or (5 if args.quick else 31)

    began = time.perf_counter()
    data = dataset(rows, rebuild=args.rebuild, cache_dir=args.cache_dir)
    print(f"database: {data.data_dir / 'leaktrace.db'} ({rows:,} jobs, {rows:,} backtraces), "
          f"ready in {time.perf_counter() - began:.1f} s", file=sys.stderr)  # fmt: skip
    load_before = os.getloadavg()[0]
    results = measure(data, rounds=rounds)
    load_after = os.getloadavg()[0]
    failed = [r for r in results if r["ratio"] > TARGET_RATIO]

    table = report.markdown_table(
        ["list", "rows returned / matching", "API median ms", "query median ms (rows)", "API / query",
         f"<= {TARGET_RATIO:g}", "CPU per call, API / query", "ORM-object query median ms", "API / ORM query"],
        [[r["list"], f"{r['rows']:,} / {r['total']:,}", f"{r['api_s'] * 1000:.1f}", f"{r['query_s'] * 1000:.1f}",
          f"{r['ratio']:.2f}", "yes" if r["ratio"] <= TARGET_RATIO else "NO",
          f"{r['api_cpu_s'] * 1000:.1f} / {r['query_cpu_s'] * 1000:.1f} ms = {r['cpu_ratio']:.2f}",
          f"{r['orm_query_s'] * 1000:.1f}", f"{r['orm_ratio']:.2f}"] for r in results],
    )  # fmt: skip
    body = (
        f"{rows:,} jobs and {rows:,} backtraces of one account in SQLite (WAL); median of {rounds} requests per "
        f"list, each interleaved with the plain SQLAlchemy query for the same page (same filter, order and "
        f"limit) returning table rows with JSON columns decoded, which is how the list services fetch it, and "
        f"with the same query returning ORM objects (context only). Requests go to `leaktrace serve` (uvicorn, "
        f"its own process) on a loopback port over one keep-alive connection. URLs: `{JOBS_URL}` and "
        f"`{BACKTRACES_URL}`. The verdict is API / row query on wall-clock medians; the CPU column (the server "
        f"process's CPU per request from /proc against the query's) is disturbed much less by the other "
        f"processes on a shared machine (1-minute load average {load_before:.1f} before the run and "
        f"{load_after:.1f} after, on {os.cpu_count()} cores).\n\n{table}"
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
