"""Queue setup: SqliteHuey under the data dir by default, RedisHuey for `redis://` URLs."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from huey import Huey, RedisHuey, SqliteHuey
from huey.api import TaskWrapper
from huey.consumer import Consumer

from leaktrace.config import Settings
from leaktrace.flows import pings
from leaktrace.store import backtraces, jobs
from leaktrace.store.db import open_database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskQueue:
    """A Huey instance with the service's tasks registered on it."""

    huey: Huey
    run_job: TaskWrapper
    run_backtrace: TaskWrapper
    send_ping: TaskWrapper

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

    def submit_ping(self, ping: pings.Ping | None) -> None:
        """Queue `ping` for delivery (None: nothing to send). Never raises: a ping that cannot be
        queued is logged and dropped, so the work it reports on goes on."""
        if ping is None:
            return
        try:
            self.send_ping(dataclasses.asdict(ping), 1)
        except Exception:
            log.exception("ping %s could not be queued", ping.delivery_id)


def make_queue(settings: Settings, *, immediate: bool = False) -> TaskQueue:
    """The queue `settings` select, with `run_job`, `run_backtrace` and `send_ping` registered."""
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

    @huey.task(name="send_ping")
    def send_ping(fields: dict[str, str], number: int) -> None:
        # The queue carries the ping without its secret; `attempt` reads the secret at send time.
        delay_s = pings.attempt(open_database(database_url), settings, pings.Ping(**fields), number=number)
        if delay_s is not None:
            send_ping.schedule(args=(fields, number + 1), delay=delay_s)

    return TaskQueue(huey=huey, run_job=run_job, run_backtrace=run_backtrace, send_ping=send_ping)


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
