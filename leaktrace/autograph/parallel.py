"""Chunks of a title prepared side by side in worker processes and handed back in title order.

With one worker the chunks run in this process, one after the other. With more, a pool of worker
processes runs `chunk.prepare_chunk`; the caller's job iterator (which decodes the input) is
drawn on only while fewer than `workers + 1` chunks are in flight, so at most that many chunks of
frames are held at once. The results are the same bytes either way: each chunk's work depends on
its own frames only (`chunk.py`).

Worker processes start from a fork server that has the engine imported once (`forkserver`
rather than `fork`: the parent holds encoder threads). A worker that dies (killed, out of memory)
fails the prepare instead of hanging it (`concurrent.futures` marks the pool broken), and a
cancelled or failed prepare terminates the workers, so none outlives it.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType

import numpy as np

from leaktrace.autograph import chunk as chunk_module
from leaktrace.autograph.chunk import ChunkJob, ChunkResult, prepare_chunk
from leaktrace.autograph.plan import PrepareCancelled, PrepareError

# How often the parent looks at `cancelled` while it waits for a worker (seconds).
POLL_SECONDS = 0.1


def worker_count(workers: int | None) -> int:
    """The number of workers to use: `workers`, or one per core when None."""
    if workers is None:
        return os.cpu_count() or 1
    if workers < 1:
        raise PrepareError(f"workers must be at least 1, not {workers}")
    return workers


class ChunkRunner:
    """Runs chunk jobs on `workers` processes (or inline for one) and yields their results in order.

    `on_frames(count)` is called in this process as frames are done: per position when inline, per
    chunk with workers. `cancelled` is polled before each position inline, and every POLL_SECONDS
    while waiting for a worker; it ends the run with PrepareCancelled. Use as a context manager:
    leaving it terminates the worker processes.
    """

    def __init__(self, workers: int, *, on_frames: Callable[[int], None],
                 cancelled: Callable[[], bool] | None = None):
        self.workers, self.on_frames, self.cancelled = workers, on_frames, cancelled
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> ChunkRunner:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._pool is not None:
            _terminate(self._pool)
            self._pool = None

    def run(self, jobs: Iterable[tuple[ChunkJob, Sequence[np.ndarray]]]) -> Iterator[ChunkResult]:
        """The result of every (job, frames) of `jobs`, in the order of `jobs`."""
        if self.workers == 1:
            for job, frames in jobs:
                yield prepare_chunk(job, frames, on_position=self.on_frames, cancelled=self.cancelled)
            return
        pending: deque[tuple[ChunkJob, Future[ChunkResult]]] = deque()
        for job, frames in jobs:
            pending.append((job, self._start_pool().submit(prepare_chunk, job, frames)))
            del frames
            if len(pending) > self.workers:
                yield self._wait(*pending.popleft())
        while pending:
            yield self._wait(*pending.popleft())

    def _start_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([chunk_module.__name__])
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context)
        return self._pool

    def _wait(self, job: ChunkJob, pending: Future[ChunkResult]) -> ChunkResult:
        while not pending.done():
            if self.cancelled is not None and self.cancelled():
                raise PrepareCancelled("prepare was cancelled")
            try:
                pending.result(timeout=POLL_SECONDS)
            except TimeoutError:
                pass
            except BrokenProcessPool as exc:
                raise PrepareError(f"a worker process preparing chunk {job.chunk.index} died: {exc}") from exc
        try:
            result = pending.result()
        except BrokenProcessPool as exc:
            raise PrepareError(f"a worker process preparing chunk {job.chunk.index} died: {exc}") from exc
        self.on_frames(job.chunk.frame_count)
        return result


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop every worker now, busy or not, and wait for them to exit."""
    terminate = getattr(pool, "terminate_workers", None)   # Python 3.14+
    if terminate is not None:
        terminate()
    else:
        # before 3.14 the executor has no public way to stop a running task: its process table is
        # the only handle on the workers
        for process in list((pool._processes or {}).values()):
            process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)
