"""The work queue (Huey) and its tasks.

The queue carries only ids; job and backtrace state lives in the service's tables. Each task is a
thin wrapper around a service function that tests can call directly.
"""

from leaktrace.tasks.queue import TaskQueue, embedded_consumer, make_queue

__all__ = ["TaskQueue", "embedded_consumer", "make_queue"]
