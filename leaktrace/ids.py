"""Object ids and timestamps.

Ids are 24 lowercase hex characters like MongoDB ObjectIds (the format MediaHub clients expect):
4 bytes of creation time in seconds followed by 8 random bytes, so ids sort roughly by creation.
Times are integer milliseconds since the epoch.
"""

from __future__ import annotations

import re
import secrets
import time

_ID_PATTERN = re.compile(r"^[0-9a-f]{24}$")


def new_id() -> str:
    """A fresh 24-hex object id."""
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{secrets.token_hex(8)}"


def is_id(value: object) -> bool:
    """True when `value` is a well-formed 24-hex object id."""
    return isinstance(value, str) and bool(_ID_PATTERN.match(value))


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    return time.time_ns() // 1_000_000
