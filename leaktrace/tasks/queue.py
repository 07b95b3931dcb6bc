"""Queue setup: SqliteHuey under the data dir by default, RedisHuey for `redis://` URLs.

Each task is a thin wrapper that calls a flow; the queue only carries ids, the state lives in the
service's own tables. `Supervisor` runs beside the consumers and gives jobs whose worker died back
to the queue (`flows.imports.recover`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from huey import Huey, RedisHuey, SqliteHuey
from huey.api import TaskWrapper
from huey.consumer import Consumer

from leaktrace.config import Settings
from leaktrace.flows import imports, pings, uploads
from leaktrace.media.fetch import FetchPolicy
from leaktrace.storage import open_storage
from leaktrace.store import backtraces, job_runs
from leaktrace.store.db import open_database

log = logging.getLogger(__name__)


@dataclass
class TaskQueue:
    """A Huey instance with the service's tasks registered on it."""

    huey: Huey
    settings: Settings
    run_job: TaskWrapper = field(init=False)
    run_backtrace: TaskWrapper = field(init=False)
    complete_upload: TaskWrapper = field(init=False)
    send_ping: TaskWrapper = field(init=False)

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

    def submit_ping(self, ping: pings.Ping | None) -> None:
        """Queue `ping` for delivery (None: nothing to send). Never raises: a ping that cannot be
        queued is logged and dropped, so the work it reports on goes on."""
        if ping is None:
            return
        try:
            self.send_ping(dataclasses.asdict(ping), 1)
        except Exception:
            log.exception("ping %s could not be queued", ping.delivery_id)

    def notify(self, job_id: str, event: str) -> None:
        """Ping the job's pipeline about `event` (started, finished, warning, error), if it asks."""
        try:
            ping = pings.ping_for_job(open_database(self.settings.resolved_database_url), job_id, event=event,
                                      base_url=self.settings.base_url)  # fmt: skip
        except Exception:
            log.exception("job %s: the %s ping could not be built", job_id, event)
            return
        self.submit_ping(ping)

    def import_env(self) -> imports.ImportEnv:
        """What the import flow needs, from this queue's settings."""
        settings = self.settings
        return imports.ImportEnv(
            storage=open_storage(settings.resolved_storage_url),
            data_dir=settings.data_dir,
            fetch_policy=FetchPolicy.from_settings(settings),
            lease_s=settings.job_lease_s,
            max_attempts=settings.job_max_attempts,
            notify=self.notify,
            prepare_workers=settings.prepare_workers,
        )


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
    queue = TaskQueue(huey=huey, settings=settings)

    @huey.task(name="run_job")
    def run_job(job_id: str) -> None:
        imports.run(open_database(database_url), queue.import_env(), job_id)

    @huey.task(name="run_backtrace")
    def run_backtrace(backtrace_id: str) -> None:
        backtraces.process(open_database(database_url), backtrace_id=backtrace_id)

    storage_url = settings.resolved_storage_url

    @huey.task(name="complete_upload")
    def complete_upload(upload_id: str) -> None:
        db, storage = open_database(database_url), open_storage(storage_url)
        uploads.complete(db, storage, upload_id=upload_id)
        uploads.sweep_abandoned(db, storage)

    @huey.task(name="send_ping")
    def send_ping(fields: dict[str, str], number: int) -> None:
        # The queue carries the ping without its secret; `attempt` reads the secret at send time.
        delay_s = pings.attempt(open_database(database_url), settings, pings.Ping(**fields), number=number)
        if delay_s is not None:
            send_ping.schedule(args=(fields, number + 1), delay=delay_s)

    queue.run_job = run_job
    queue.run_backtrace = run_backtrace
    queue.complete_upload = complete_upload
    queue.send_ping = send_ping
    return queue


class Supervisor:
    """A thread that runs `flows.imports.recover` every half lease, and once at start.

    At start it also queues again every job still QUEUED: a queue message lost with a crashed
    queue (or a worker killed between taking the message and claiming the job) is not a lost job.
    Duplicate messages are harmless: a job is claimed once.
    """

    def __init__(self, queue: TaskQueue) -> None:
        self._queue = queue
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        settings = self._queue.settings
        db = open_database(settings.resolved_database_url)
        env = self._queue.import_env()
        try:
            for job_id in job_runs.queued(db):
                self._queue.submit_job(job_id)
        except Exception:
            log.exception("resubmitting queued jobs failed")
        while True:
            try:
                imports.recover(db, env, self._queue.submit_job)
            except Exception:
                log.exception("job recovery failed; trying again later")
            if self._stop.wait(settings.job_lease_s / 2):
                return


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
