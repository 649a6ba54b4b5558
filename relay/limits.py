"""What one runsmtp process lets clients hold: connections (per IP, per IP before AUTH) and
the bytes of unauthenticated DATA kept in memory. Plain counters, used on the event loop only.
"""
from __future__ import annotations

from collections import defaultdict


def _decrement(counts: dict[str, int], key: str) -> None:
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]


class ConnectionCounts:
    """Open connections per client IP, and those among them that have not authenticated.

    A connection counts as unauthenticated from TCP accept until its AUTH succeeds; a cap of 0
    is no cap.
    """

    def __init__(self, max_per_ip: int, max_unauth_per_ip: int):
        self.max_per_ip = max_per_ip
        self.max_unauth_per_ip = max_unauth_per_ip
        self.per_ip: dict[str, int] = defaultdict(int)
        self.unauth_per_ip: dict[str, int] = defaultdict(int)

    def open(self, ip: str | None) -> str | None:
        """Count a new connection; the reason it is refused instead, or None."""
        key = ip or "?"
        if self.max_per_ip and self.per_ip[key] >= self.max_per_ip:
            return "too many connections from this IP"
        if self.max_unauth_per_ip and self.unauth_per_ip[key] >= self.max_unauth_per_ip:
            return "too many unauthenticated connections from this IP"
        self.per_ip[key] += 1
        self.unauth_per_ip[key] += 1
        return None

    def authenticated(self, ip: str | None) -> None:
        _decrement(self.unauth_per_ip, ip or "?")

    def close(self, ip: str | None, authenticated: bool) -> None:
        key = ip or "?"
        _decrement(self.per_ip, key)
        if not authenticated:
            _decrement(self.unauth_per_ip, key)


class ByteBudget:
    """Bytes held across sessions, up to ``limit`` (0: no limit)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0

    def free(self) -> int | None:
        """Bytes still free, or None without a limit."""
        return max(self.limit - self.held, 0) if self.limit else None

    def take(self, n: int) -> bool:
        """Hold ``n`` more bytes; False (and nothing held) when that would pass the limit."""
        if self.limit and self.held + n > self.limit:
            return False
        self.held += n
        return True

    def give(self, n: int) -> None:
        self.held -= n
