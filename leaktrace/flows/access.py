"""Recording deliveries off the request path: a thread that writes access records in batches.

A response hands its `store.access.Delivery` to `AccessRecorder.submit` (a queue put, never a
database write) when its last byte has gone or the client went away. The recorder's thread
writes what has queued up in one transaction per batch, after looking up the country of each
client address (`delivery.geo`). `stop()` writes everything still queued
before it returns, so a clean shutdown loses no record; `flush()` waits until everything
submitted so far is written (tests, and callers that must read their own records).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading

from leaktrace.delivery import geo
from leaktrace.store import access
from leaktrace.store.access import Delivery
from leaktrace.store.db import Database

log = logging.getLogger(__name__)

MAX_BATCH = 500  # deliveries written per transaction at most
IDLE_WAIT_S = 0.5  # how long the thread sleeps on an empty queue before looking again
_STOP = object()


def _located(delivery: Delivery) -> Delivery:
    """The delivery with the country and network type of its client address (looked up here, in
    the recorder's thread, so requests never wait for the lookup)."""
    if delivery.ip_country is not None or delivery.ip_address is None:
        return delivery
    address = delivery.ip_address
    return dataclasses.replace(delivery, ip_country=geo.country(address), ip_type=geo.ip_type(address))


class AccessRecorder:
    """A background writer of access records; `start()`, `submit(delivery)`, `flush()`, `stop()`."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="access-recorder", daemon=True)
            self._thread.start()

    def submit(self, delivery: Delivery) -> None:
        """Queue one delivery for recording (cheap; the request does not wait for the database)."""
        self._queue.put(delivery)

    def flush(self) -> None:
        """Wait until every delivery submitted before this call is written (or failed to be)."""
        if self._thread is None:
            self._write(self._drain())
            return
        self._queue.join()

    def stop(self) -> None:
        """Write everything still queued, then end the thread."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join()
        self._thread = None

    def _drain(self, first: object | None = None) -> list[object]:
        items = [] if first is None else [first]
        while len(items) < MAX_BATCH:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _write(self, items: list[object]) -> None:
        deliveries = [item for item in items if isinstance(item, Delivery)]
        try:
            access.record(self._db, [_located(delivery) for delivery in deliveries])
        except Exception:  # a failed batch must not end recording for the process
            log.exception("could not record %d deliveries", len(deliveries))
        finally:
            for _ in items:
                self._queue.task_done()

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=IDLE_WAIT_S)
            except queue.Empty:
                continue
            items = self._drain(first)
            self._write(items)
            if any(item is _STOP for item in items):
                leftover = self._drain()
                if leftover:
                    self._write(leftover)
                return
