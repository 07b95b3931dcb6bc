"""Queue setup: SqliteHuey under the data dir by default, RedisHuey for `redis://` URLs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from huey import Huey, RedisHuey, SqliteHuey
from huey.api import TaskWrapper
from huey.consumer import Consumer

from leaktrace.config import Settings
from leaktrace.flows import uploads
from leaktrace.storage import open_storage
from leaktrace.store import backtraces, jobs
from leaktrace.store.db import open_database


@dataclass(frozen=True)
class TaskQueue:
    """A Huey instance with the service's tasks registered on it."""

    huey: Huey
    run_job: TaskWrapper
    run_backtrace: TaskWrapper
    complete_upload: TaskWrapper

    @property
    def is_embedded(self) -> bool:
        """True for the SQLite queue, which `leaktrace serve` consumes in its own threads."""
        return isinstance(self.huey, SqliteHuey)

    def submit_job(self, job_id: str) -> None:
        """Queue job `job_id` for processing."""
        self.run_job(job_id)

    def submit_backtrace(self, backtrace_id: str) -> None:
        """Queue backtrace `backtrace_id` for processing."""
        self.run_backtrace(backtrace_id)

    def submit_upload_completion(self, upload_id: str) -> None:
        """Queue the assembly of upload `upload_id`'s chunks."""
        self.complete_upload(upload_id)


def make_queue(settings: Settings, *, immediate: bool = False) -> TaskQueue:
    """The queue `settings` select, with `run_job` and `run_backtrace` registered."""
    url = settings.resolved_queue_url
    scheme = urlsplit(url).scheme
    if scheme in ("redis", "rediss"):
        huey: Huey = RedisHuey("leaktrace", url=url, immediate=immediate)
    elif scheme == "sqlite":
        path = Path(urlsplit(url).path)
        path.parent.mkdir(parents=True, exist_ok=True)
        huey = SqliteHuey("leaktrace", filename=str(path), immediate=immediate)
    else:
        raise ValueError(f"LEAKTRACE_QUEUE_URL must be sqlite:///PATH or redis://…, not {url!r}")
    database_url = settings.resolved_database_url

    @huey.task(name="run_job")
    def run_job(job_id: str) -> None:
        jobs.process(open_database(database_url), job_id=job_id)

    @huey.task(name="run_backtrace")
    def run_backtrace(backtrace_id: str) -> None:
        backtraces.process(open_database(database_url), backtrace_id=backtrace_id)

    storage_url = settings.resolved_storage_url

    @huey.task(name="complete_upload")
    def complete_upload(upload_id: str) -> None:
        db, storage = open_database(database_url), open_storage(storage_url)
        uploads.complete(db, storage, upload_id=upload_id)
        uploads.sweep_abandoned(db, storage)

    return TaskQueue(huey=huey, run_job=run_job, run_backtrace=run_backtrace, complete_upload=complete_upload)


class _ThreadConsumer(Consumer):
    """A consumer that leaves signal handling to its host process (the web server)."""

    def _set_signal_handlers(self) -> None:
        pass


def embedded_consumer(queue: TaskQueue, *, workers: int) -> Consumer:
    """Consumer threads to run inside `leaktrace serve`; call `.start()` and `.stop()`."""
    return _ThreadConsumer(queue.huey, workers=workers, worker_type="thread", periodic=False)


def process_consumer(queue: TaskQueue, *, workers: int) -> Consumer:
    """The consumer of `leaktrace worker`; `.run()` blocks and handles signals."""
    return Consumer(queue.huey, workers=workers, worker_type="thread", periodic=False)
