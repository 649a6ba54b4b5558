"""FailureCounter: failures per key within a window, the one counter type of both throttles.

The dashboard sign-in policy (credentials.throttle) keeps it in Django's cache, so that every
web process counts the same failures; the SMTP AUTH policy (relay.smtp_auth) keeps it in
process, on the event loop.
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Hashable

from django.core.cache.backends.base import BaseCache

MAX_KEYS = 20_000  # in process: past this many keys, the expired ones are swept out


class FailureCounter:
    """Recent failures per key; a key is blocked once ``limit`` of them (0: never) fall within
    the last ``window`` seconds.

    In process (the default) it is a sliding window, read and written without I/O: safe on
    an event loop. With ``store`` (a Django cache) the counts are shared by every process
    that uses that cache, and a key's window starts at its first failure (cache.add() sets
    the expiry once); keys are prefixed with ``prefix`` there.

    ``distinct=True`` counts the distinct values given to add(key, value) instead (each
    with its last time): "how many usernames failed from this address". In process only.
    """

    def __init__(self, limit: int, window: float, *, distinct: bool = False,
                 store: BaseCache | None = None, prefix: str = ""):
        if distinct and store is not None:
            raise ValueError("distinct counting is kept in process only")
        self.limit = limit
        self.window = window
        self.distinct = distinct
        self.store = store
        self.prefix = prefix
        self._seen: dict[Hashable, dict[Hashable, float]] = {}  # key -> {value: last time}
        self._serial = itertools.count()  # the value of each plain failure

    def _recent(self, key: Hashable, now: float) -> dict[Hashable, float] | None:
        seen = self._seen.get(key)
        if seen is None:
            return None
        expired = now - self.window
        for value in [v for v, t in seen.items() if t <= expired]:
            del seen[value]
        if not seen:
            del self._seen[key]
            return None
        return seen

    def blocked(self, *keys: Hashable) -> bool:
        """Whether any of ``keys`` has used up its failures."""
        if self.limit <= 0:
            return False
        if self.store is not None:
            counts = self.store.get_many([self.prefix + str(k) for k in keys])
            return any(n >= self.limit for n in counts.values())
        now = time.monotonic()
        for key in keys:
            seen = self._recent(key, now)
            if seen is not None and len(seen) >= self.limit:
                return True
        return False

    def add(self, key: Hashable, value: Hashable = None) -> None:
        """Count a failure for ``key`` (with ``distinct``: of ``value``)."""
        if self.store is not None:
            name = self.prefix + str(key)
            self.store.add(name, 0, timeout=self.window)
            try:
                self.store.incr(name)
            except ValueError:  # expired between add() and incr()
                self.store.set(name, 1, timeout=self.window)
            return
        now = time.monotonic()
        if len(self._seen) > MAX_KEYS:
            for k in list(self._seen):
                self._recent(k, now)
        if not self.distinct:
            value = next(self._serial)
        self._seen.setdefault(key, {})[value] = now

    def clear(self, key: Hashable) -> None:
        """Forget the failures of ``key``."""
        if self.store is not None:
            self.store.delete(self.prefix + str(key))
        else:
            self._seen.pop(key, None)
