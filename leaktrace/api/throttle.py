"""Slowing down, then refusing, guesses of client secrets on the token endpoint.

Failed client authentications are counted per client id and per client address, each over the
last `WINDOW_S`. Within a key's window:

- the first `FREE_FAILURES` failures are answered at once;
- later failures are answered after `DELAY_S` (the caller waits; other requests do not);
- once a key has `LOCK_AFTER_FAILURES` failures, every token request for it is refused with 429
  and `Retry-After` for `LOCKOUT_S`, without checking the secret (a check would still tell a
  guesser when it is right). After that the key starts again with a clean count, so the real
  client of a guessed-at client id is kept out for at most `LOCKOUT_S` at a time.

A successful authentication clears the client id's count. The address limit is higher than the
client id's, since many clients may share an address (a NAT). State lives in this process's
memory: each server process counts on its own, and a restart forgets.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

WINDOW_S = 600.0
FREE_FAILURES = 5
DELAY_S = 1.0
LOCK_AFTER_FAILURES = 10
ADDRESS_LOCK_AFTER_FAILURES = 50
LOCKOUT_S = 60.0
MAX_TRACKED_KEYS = 10_000


@dataclass
class _Key:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


@dataclass(frozen=True)
class Verdict:
    """What to do with a token request before checking its secret."""

    retry_after_s: int = 0  # > 0: refuse with 429 and this Retry-After

    @property
    def refused(self) -> bool:
        return self.retry_after_s > 0


class GuessThrottle:
    """The counters of one server process; `clock` and `delay_s` differ from the defaults in tests."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, delay_s: float = DELAY_S) -> None:
        self.clock = clock
        self.delay_s = delay_s
        self._keys: dict[tuple[str, str], _Key] = {}
        self._lock = threading.Lock()

    def check(self, *, client_id: str, address: str) -> Verdict:
        """Refuse (with the seconds to wait) while the client id or the address is locked."""
        now = self.clock()
        with self._lock:
            waits = [key.locked_until - now for key in self._existing(client_id, address) if key.locked_until > now]
        return Verdict(retry_after_s=max(1, round(max(waits) + 0.5))) if waits else Verdict()

    def failed(self, *, client_id: str, address: str) -> float:
        """Count a failed authentication; returns the seconds to wait before answering it."""
        now = self.clock()
        delay = 0.0
        with self._lock:
            self._forget_if_full(now)
            for kind, value, limit in (("client", client_id, LOCK_AFTER_FAILURES), ("address", address, ADDRESS_LOCK_AFTER_FAILURES)):
                key = self._keys.setdefault((kind, value), _Key())
                _expire(key, now)
                key.failures.append(now)
                if len(key.failures) >= limit:
                    key.locked_until = now + LOCKOUT_S
                    key.failures.clear()
                elif len(key.failures) > FREE_FAILURES:
                    delay = self.delay_s
        return delay

    def succeeded(self, *, client_id: str) -> None:
        """The client id's real client got in: its failures no longer count."""
        with self._lock:
            self._keys.pop(("client", client_id), None)

    def _existing(self, client_id: str, address: str) -> list[_Key]:
        return [key for key in (self._keys.get(("client", client_id)), self._keys.get(("address", address))) if key]

    def _forget_if_full(self, now: float) -> None:
        # Guessing with ever new client ids must not grow memory without bound.
        if len(self._keys) < MAX_TRACKED_KEYS:
            return
        for name, key in list(self._keys.items()):
            _expire(key, now)
            if not key.failures and key.locked_until <= now:
                del self._keys[name]
        while len(self._keys) >= MAX_TRACKED_KEYS:
            del self._keys[next(iter(self._keys))]


def _expire(key: _Key, now: float) -> None:
    while key.failures and key.failures[0] <= now - WINDOW_S:
        key.failures.popleft()
