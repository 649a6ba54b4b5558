"""The mx transport (DELIVERY_MODE=mx): route a domain, borrow a pooled connection to its next
hop, send, and turn the replies into outcomes.

- Routes: relay.mx.resolve() with RELAY_ROUTES and the DNS_NAMESERVERS resolver, kept per
  domain for ROUTE_CACHE_SECONDS (errors that may pass for TEMPORARY_CACHE_SECONDS), at most
  ROUTE_CACHE_SIZE domains; concurrent lookups of one domain share one resolve(). The
  resolver's own cache honours the records' TTLs below this one. Hosts of equal MX
  preference are shuffled again on every use, so a cached route still spreads the load.
  MX hosts are reached on SMTP_OUT_PORT (25); RELAY_ROUTES name their own ports.
  A permanent routing error (null MX 5.1.10, NXDOMAIN 5.1.2, only non-public addresses 5.4.4)
  fails every recipient at once; a temporary one defers them.
- Connections: one pool per next hop (host, IP, port, TLS mode, credentials), at most
  DELIVERY_DESTINATION_CONCURRENCY connections each; a connection carries at most
  DELIVERY_CONNECTION_MESSAGES transactions (relay.smtp_out sends RSET between them) and is
  closed with QUIT after DELIVERY_CONNECTION_IDLE seconds unused. Waiters for a full pool are
  served first come, first served.
- Next host: addresses of a host in order, then the next MX host. A host failure (refused,
  timed out, 4xx/5xx greeting or EHLO, lost connection) or a 4xx that answers the whole
  transaction (MAIL, DATA, the reply after the data) moves the recipients it concerns to the
  next address. A recipient's own RCPT reply settles it on that host: 2xx delivered, 4xx
  deferred (no other MX this attempt: the mailbox, not the host, is busy), 5xx failed.
  When no host is left, the last host's reply defers them.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import dns.asyncresolver

from .delivery import Rcpt, RecipientOutcome
from .mx import Destination, Resolution, Route, resolve, route_for
from .smtp_out import Rcpt as WireRcpt
from .smtp_out import Reply, Session, Timeouts, TransactionResult

log = logging.getLogger("relay.outbound")
ROUTE_CACHE_SECONDS = 60.0
TEMPORARY_CACHE_SECONDS = 5.0  # a SERVFAIL is asked again soon, not per transaction
ROUTE_CACHE_SIZE = 10_000


# -- routes ----------------------------------------------------------------------------------


class RouteCache:
    """resolve() per domain, kept briefly; see the module docstring."""

    def __init__(self, routes: Mapping[str, Route], resolver: dns.asyncresolver.Resolver,
                 allow_private: bool, mx_port: int = 25,
                 rng: random.Random | None = None) -> None:
        self.routes = routes
        self.mx_port = mx_port
        self.resolver = resolver
        self.allow_private = allow_private
        self.rng = rng or random.Random()
        self._cache: OrderedDict[str, tuple[float, Resolution]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[Resolution]] = {}

    async def get(self, domain: str) -> Resolution:
        now = time.monotonic()
        hit = self._cache.get(domain)
        if hit is not None and hit[0] > now:
            self._cache.move_to_end(domain)
            return self._reshuffled(hit[1])
        pending = self._pending.get(domain)
        if pending is None:
            pending = asyncio.ensure_future(self._resolve(domain))
            self._pending[domain] = pending
            pending.add_done_callback(lambda _: self._pending.pop(domain, None))
        return self._reshuffled(await asyncio.shield(pending))

    async def _resolve(self, domain: str) -> Resolution:
        resolution = await resolve(domain, self.routes, self.resolver, self.allow_private,
                                   self.rng)
        if self.mx_port != 25 and route_for(domain, self.routes) is None:
            resolution = Resolution(tuple(replace(d, port=self.mx_port)
                                          for d in resolution.destinations), resolution.error)
        temporary = resolution.error is not None and not resolution.error.permanent
        keep = TEMPORARY_CACHE_SECONDS if temporary else ROUTE_CACHE_SECONDS
        self._cache[domain] = (time.monotonic() + keep, resolution)
        self._cache.move_to_end(domain)
        while len(self._cache) > ROUTE_CACHE_SIZE:
            self._cache.popitem(last=False)
        return resolution

    def _reshuffled(self, resolution: Resolution) -> Resolution:
        hosts = list(resolution.destinations)
        if len(hosts) < 2:
            return resolution
        self.rng.shuffle(hosts)
        hosts.sort(key=lambda d: -1 if d.preference is None else d.preference)
        return Resolution(tuple(hosts))


# -- connections -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Hop:
    """One next hop: a host name at one address and port, with the route's TLS and AUTH."""

    host: str
    ip: str
    port: int
    tls: str
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)

    def destination(self) -> Destination:
        return Destination(self.host, (self.ip,), self.port, self.tls, self.username,
                           self.password)

    def __str__(self) -> str:
        return f"{self.host}[{self.ip}]:{self.port}"


class _Pool:
    """The connections to one Hop: idle ones (most recently used last), a count of all that
    exist, and the waiters for a free one."""

    def __init__(self) -> None:
        self.idle: list[tuple[Session, float]] = []
        self.count = 0  # sessions handed out or idle
        self.waiters: deque[asyncio.Future[Session]] = deque()
        self.opened = 0  # sessions ever made (tests and logs)


class ConnectionPools:
    def __init__(self, helo_name: str, timeouts: Timeouts, limit: int, per_connection: int,
                 idle: float) -> None:
        self.helo_name = helo_name
        self.timeouts = timeouts
        self.limit = limit
        self.per_connection = per_connection
        self.idle_seconds = idle
        self._pools: dict[Hop, _Pool] = {}
        self._closing: set[asyncio.Task] = set()
        self._reaper: asyncio.Task | None = None
        self.closed = False

    def _new(self, hop: Hop, pool: _Pool) -> Session:
        pool.count += 1
        pool.opened += 1
        return Session(hop.destination(), self.helo_name, self.timeouts)

    async def acquire(self, hop: Hop) -> Session:
        if self._reaper is None and self.idle_seconds > 0:
            self._reaper = asyncio.create_task(self._reap())
        pool = self._pools.setdefault(hop, _Pool())
        while pool.idle:
            session, _ = pool.idle.pop()
            if session.connected:
                return session
            pool.count -= 1  # closed by the server while idle
        if pool.count < self.limit and not pool.waiters:
            return self._new(hop, pool)
        waiter: asyncio.Future[Session] = asyncio.get_running_loop().create_future()
        pool.waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(hop, waiter.result())  # handed to us as we were cancelled
            else:
                pool.waiters.remove(waiter)
            raise

    def release(self, hop: Hop, session: Session) -> None:
        """Give a session back: to the first waiter, else to the idle list; a dead or used-up
        one is closed and its place goes to the first waiter as a new session."""
        pool = self._pools[hop]
        reusable = (session.connected and session.transactions < self.per_connection
                    and not self.closed)
        if not reusable:
            pool.count -= 1
            self._quit(session)
        while pool.waiters:
            waiter = pool.waiters.popleft()
            if waiter.done():
                continue
            if reusable:
                waiter.set_result(session)
                return
            if pool.count < self.limit:
                waiter.set_result(self._new(hop, pool))
                return
            pool.waiters.appendleft(waiter)
            return
        if reusable:
            pool.idle.append((session, time.monotonic()))

    def _quit(self, session: Session) -> None:
        if not session.connected:
            return  # closed already (relay.smtp_out closes on every failure)
        task = asyncio.ensure_future(session.quit())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def connections(self, hop: Hop) -> int:
        pool = self._pools.get(hop)
        return pool.count if pool else 0

    async def _reap(self) -> None:
        """Close connections idle longer than idle_seconds; forget unused pools."""
        while not self.closed:
            await asyncio.sleep(min(1.0, self.idle_seconds / 2))
            cutoff = time.monotonic() - self.idle_seconds
            for hop, pool in list(self._pools.items()):
                stale = [s for s, since in pool.idle if since <= cutoff]
                pool.idle = [(s, since) for s, since in pool.idle if since > cutoff]
                for session in stale:
                    pool.count -= 1
                    self._quit(session)
                if pool.count == 0 and not pool.waiters:
                    del self._pools[hop]

    async def close(self) -> None:
        """QUIT every idle connection; sessions still out are closed when given back."""
        self.closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        for pool in self._pools.values():
            for session, _ in pool.idle:
                pool.count -= 1
                self._quit(session)
            pool.idle = []
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=15)


# -- the transport ---------------------------------------------------------------------------


class MxTransport:
    """relay.delivery's Transport for DELIVERY_MODE=mx."""

    def __init__(self, routes: RouteCache, pools: ConnectionPools) -> None:
        self.routes = routes
        self.pools = pools

    @classmethod
    def from_settings(cls) -> MxTransport:
        from django.conf import settings

        from .mx import resolver_from_settings

        return cls(
            RouteCache(settings.RELAY_ROUTES, resolver_from_settings(),
                       settings.DELIVERY_ALLOW_PRIVATE, settings.SMTP_OUT_PORT),
            ConnectionPools(settings.SMTP_HOSTNAME, Timeouts.from_settings(),
                            settings.DELIVERY_DESTINATION_CONCURRENCY,
                            settings.DELIVERY_CONNECTION_MESSAGES,
                            settings.DELIVERY_CONNECTION_IDLE),
        )

    async def send(self, route_key: str, mail_from: str, recipients: list[Rcpt], data: bytes,
                   ret: str, envid: str) -> list[RecipientOutcome]:
        started = time.monotonic()
        resolution = await self.routes.get(route_key)
        if resolution.error is not None:
            error = resolution.error
            status = "failed" if error.permanent else "deferred"
            took = _ms(time.monotonic() - started)
            return [RecipientOutcome(status, error.code, error.status, error.text,
                                     host=route_key, duration_ms=took) for _ in recipients]
        outcomes: list[RecipientOutcome | None] = [None] * len(recipients)
        left = list(range(len(recipients)))
        last: dict[int, RecipientOutcome] = {}
        for hop in _hops(resolution):
            result = await self._transaction(hop, mail_from, [recipients[i] for i in left],
                                             data, ret, envid)
            again = []
            for i, answer in zip(left, result.recipients, strict=True):
                outcome = _outcome(answer.reply, result)
                if answer.reply.temporary and not answer.own:
                    again.append(i)  # the host or the whole transaction: try the next one
                    last[i] = outcome
                else:
                    outcomes[i] = outcome
            if again and again != left:
                log.info("%s: %d of %d recipient(s) for the next host (%s)", hop,
                         len(again), len(left), result.recipients[0].reply)
            left = again
            if not left:
                break
        for i in left:
            outcomes[i] = last.get(i) or RecipientOutcome(
                "deferred", 451, "4.4.3", f"no host to try for {route_key}", host=route_key)
        return [o for o in outcomes if o is not None]

    async def _transaction(self, hop: Hop, mail_from: str, rcpts: list[Rcpt], data: bytes,
                           ret: str, envid: str) -> TransactionResult:
        session = await self.pools.acquire(hop)
        try:
            return await session.send(mail_from, [WireRcpt(r.address, r.notify, r.orcpt)
                                                  for r in rcpts], data, ret, envid)
        finally:
            self.pools.release(hop, session)

    async def close(self) -> None:
        await self.pools.close()


def _hops(resolution: Resolution):
    for d in resolution.destinations:
        for ip in d.addresses:
            yield Hop(d.host, ip, d.port, d.tls, d.username, d.password)


def _outcome(reply: Reply, result: TransactionResult) -> RecipientOutcome:
    status = "delivered" if reply.ok else "failed" if reply.permanent else "deferred"
    return RecipientOutcome(
        status, reply.code, reply.status, reply.text, host=result.host, ip=result.ip or None,
        port=result.port or None, tls_version=result.tls_version,
        tls_cipher=result.tls_cipher, duration_ms=_ms(result.duration),
        dsn_passed=result.dsn_passed, tls_note=result.tls_note)


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))

