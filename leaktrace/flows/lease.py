"""A worker's lease on a running job, kept alive by a heartbeat thread that also writes progress.

The flow does the work on its own thread and only calls `report()`; the heartbeat thread is the one
writer of the job row while it runs: every `RENEW_FRACTION` of the lease it renews the lease, and
at most every `PROGRESS_INTERVAL_S` it records changed progress. When a renewal finds the job is no
longer the worker's (deleted by the user, or given to another worker after this one stalled), the
lease is `lost` and the flow's `cancelled()` polls say so: encoders stop, the flow cleans up.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 1.0  # the API shows progress at this resolution at best
RENEW_FRACTION = 1 / 3  # renew three times per lease, so one slow write never loses it

Renew = Callable[[int | None, list[int] | None], bool]
"""Renews the lease with the latest (job percentage, output percentages); False when it is lost."""


def worker_name() -> str:
    """A name unique to this process and thread, for a lease's owner."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{secrets.token_hex(3)}"


class Heartbeat:
    """Renews a lease on its own thread until closed; `report()` hands it progress to record."""

    def __init__(self, renew: Renew, *, lease_s: float) -> None:
        self._renew = renew
        self._interval_s = min(lease_s * RENEW_FRACTION, PROGRESS_INTERVAL_S)
        self._renew_every = max(1, round(lease_s * RENEW_FRACTION / self._interval_s))
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._lock = threading.Lock()
        self._progress: tuple[int, list[int]] | None = None
        self._written: tuple[int, list[int]] | None = None
        self._thread = threading.Thread(target=self._loop, name="lease-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def lost(self) -> bool:
        """True once the job is no longer this worker's."""
        return self._lost.is_set()

    def cancelled(self) -> bool:
        """For the encoders' `cancelled` polls."""
        return self._lost.is_set()

    def report(self, percentage: int, output_percentages: list[int]) -> None:
        """Record progress at the next beat (cheap: no I/O on the caller's thread)."""
        with self._lock:
            self._progress = (percentage, list(output_percentages))

    def _loop(self) -> None:
        beats = 0
        while not self._stop.wait(self._interval_s):
            beats += 1
            with self._lock:
                progress = self._progress
            changed = progress is not None and progress != self._written
            if not changed and beats % self._renew_every:
                continue
            try:
                kept = self._renew(*(progress if changed and progress else (None, None)))
            except Exception:  # a database hiccup: try again at the next beat, the lease has slack
                log.warning("renewing a job lease failed; retrying", exc_info=True)
                continue
            if not kept:
                self._lost.set()
                return
            if changed:
                self._written = progress
