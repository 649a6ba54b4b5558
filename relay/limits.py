"""What one runsmtp process lets clients hold: connections (all together, per IP, per IP
before AUTH) and the bytes of unauthenticated DATA kept in memory. Plain counters, used on the
event loop only.
"""
from __future__ import annotations

import resource
from collections import defaultdict

# Descriptors kept free for what is not a client connection: listeners, database connections
# (three files each on SQLite in WAL mode, one per thread), log files, the event loop's own.
FD_RESERVE = 128
AT_CAP = "421 4.7.0 Too many connections, try later"
IP_CAP = "421 4.7.0 Too many connections from your address, try later"


def descriptor_limit() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def connection_cap(setting: int, fd_limit: int) -> int:
    """The process-wide connection cap: ``setting``, kept below the descriptor limit, so that a
    connection past it can still be accepted and told 421 (at the limit itself accept() fails,
    and clients see resets with nothing in the log)."""
    return max(1, min(setting, max(fd_limit - FD_RESERVE, fd_limit // 2)))


def _decrement(counts: dict[str, int], key: str) -> None:
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]


class ConnectionCounts:
    """Open connections: all of them, per client IP, and per IP those that have not
    authenticated.

    A connection counts as unauthenticated from TCP accept until its AUTH succeeds; a per-IP
    cap of 0 is no cap.
    """

    def __init__(self, max_total: int, max_per_ip: int, max_unauth_per_ip: int):
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.max_unauth_per_ip = max_unauth_per_ip
        self.total = 0
        self.per_ip: dict[str, int] = defaultdict(int)
        self.unauth_per_ip: dict[str, int] = defaultdict(int)

    def open(self, ip: str | None) -> tuple[str, str] | None:
        """Count a new connection; None, or (why, the 421 reply) when it is refused."""
        key = ip or "?"
        if self.total >= self.max_total:
            return "the process is at its connection cap", AT_CAP
        if self.max_per_ip and self.per_ip[key] >= self.max_per_ip:
            return "too many connections from this IP", IP_CAP
        if self.max_unauth_per_ip and self.unauth_per_ip[key] >= self.max_unauth_per_ip:
            return "too many unauthenticated connections from this IP", IP_CAP
        self.total += 1
        self.per_ip[key] += 1
        self.unauth_per_ip[key] += 1
        return None

    def authenticated(self, ip: str | None) -> None:
        _decrement(self.unauth_per_ip, ip or "?")

    def close(self, ip: str | None, authenticated: bool) -> None:
        key = ip or "?"
        self.total -= 1
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
