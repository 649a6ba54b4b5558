"""The runsmtp process: listeners per role on one event loop, the queue writer, AUTH pools,
SIGHUP certificate reload and a graceful stop on SIGTERM/SIGINT.

Stopping drains: new connections and new transactions get 421 4.3.2, open sessions and
deliveries in flight get SMTP_STOP_GRACE seconds to finish, what is left then is cut and its
leases given back (another process claims them at once), and the process exits 0.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings

from events.sender import WebhookSender
from features.tokens import parse_verp
from smtpeter_site.keys import key_for

from . import metrics, tls
from .delivery import DeliveryWorker, transport_for
from .intake import IntakeWorker
from .limits import AT_CAP, ByteBudget, ConnectionCounts, connection_cap, descriptor_limit
from .queue_writer import GroupWriter
from .signing import refusal
from .smtp_auth import Authenticator
from .smtpd import (
    ROLE_MX,
    ROLE_STARTTLS,
    ROLE_TLS,
    SHUTTING_DOWN,
    RelaySMTP,
    SessionContext,
)

log = logging.getLogger("relay.server")
ROLES = ("submission", "mx", "delivery", "intake", "webhooks")
LAST_USED_EVERY = 60.0  # seconds between last_used writes for one login
AT_CAP_LOG_EVERY = 60.0  # seconds between log lines while connections are refused at the cap
MX_MAX_RECIPIENTS = 10  # per message on the mx role without AUTH (a bounce has one)


def event_loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The loop factory for SMTP_EVENT_LOOP ("uvloop" or "asyncio"); ValueError otherwise."""
    if name == "asyncio":
        return asyncio.new_event_loop
    if name == "uvloop":
        import uvloop  # only imported when chosen

        return uvloop.new_event_loop
    raise ValueError(f"SMTP_EVENT_LOOP must be uvloop or asyncio, not {name!r}")


@dataclass
class ListenerSpec:
    role: str
    port: int


def listener_specs(roles: list[str], tls_ports: list[int], starttls_ports: list[int],
                   mx_ports: list[int]) -> list[ListenerSpec]:
    specs = []
    if "submission" in roles:
        specs += [ListenerSpec(ROLE_TLS, p) for p in tls_ports]
        specs += [ListenerSpec(ROLE_STARTTLS, p) for p in starttls_ports]
    if "mx" in roles:
        specs += [ListenerSpec(ROLE_MX, p) for p in mx_ports]
    return specs


class RelayServer:
    def __init__(self, specs: list[ListenerSpec], bind: str | None = None,
                 delivery: bool = False, intake: bool = False, webhooks: bool = False):
        self.specs = specs
        self.with_webhooks = webhooks
        self.webhooks: WebhookSender | None = None
        self._webhooks_task: asyncio.Task | None = None
        self.with_delivery = delivery
        self.with_intake = intake
        self.intake: IntakeWorker | None = None
        self._intake_task: asyncio.Task | None = None
        self.delivery: DeliveryWorker | None = None
        self._delivery_task: asyncio.Task | None = None
        self.bind = bind or settings.SMTP_BIND
        self.hostname = settings.SMTP_HOSTNAME
        self.max_size = settings.SMTP_MAX_MESSAGE_SIZE
        self.max_recipients = settings.SMTP_MAX_RECIPIENTS
        self.bounce_domain = settings.BOUNCE_DOMAIN.lower()
        # The mx role without AUTH: VERP addresses and these local parts at BOUNCE_DOMAIN,
        # smaller messages and fewer recipients than a submission.
        self.mx_addresses = frozenset(
            a.strip().lower() for a in settings.SMTP_MX_ADDRESSES if a.strip()
        )
        # Mail without a login is never allowed more than submitted mail.
        self.mx_max_size = min(settings.SMTP_MX_MAX_SIZE, settings.SMTP_MAX_MESSAGE_SIZE)
        self.mx_max_recipients = min(MX_MAX_RECIPIENTS, self.max_recipients)
        self.idle_timeout = settings.SMTP_IDLE_TIMEOUT
        # Until a submission session has authenticated (an mx one has greeted): never longer.
        self.preauth_idle_timeout = min(settings.SMTP_PREAUTH_IDLE_TIMEOUT, self.idle_timeout)
        self.counts = ConnectionCounts(
            settings.SMTP_MAX_CONNECTIONS, settings.SMTP_MAX_CONNECTIONS_PER_IP,
            settings.SMTP_MAX_UNAUTH_CONNECTIONS_PER_IP,
        )
        self._cap_refused = 0  # connections refused at the cap since its last log line
        self._cap_logged_at: float | None = None
        # Bytes of DATA held in memory for sessions without AUTH (the mx role), all together.
        self.unauth_data = ByteBudget(settings.SMTP_UNAUTH_DATA_BUDGET)
        self.tls_handshake_timeout = settings.SMTP_TLS_HANDSHAKE_TIMEOUT
        self.cert_file = settings.TLS_CERT_FILE
        self.key_file = settings.TLS_KEY_FILE
        self._last_used: dict[int, float] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._stopping: asyncio.Event | None = None
        self.draining = False  # SIGTERM: finishing what is open, refusing what is new
        self.stop_grace = settings.SMTP_STOP_GRACE
        self.reuse_port = settings.SMTP_REUSE_PORT
        self._sessions: weakref.WeakSet[RelaySMTP] = weakref.WeakSet()

    # -- bookkeeping used by sessions ---------------------------------------------------

    def session_context(self) -> SessionContext:
        """What every session gets from this process (not the server itself)."""
        return SessionContext(
            loop=self.loop, hostname=self.hostname, tls_context=self.tls_context,
            tls_handshake_timeout=self.tls_handshake_timeout, idle_timeout=self.idle_timeout,
            preauth_idle_timeout=self.preauth_idle_timeout, max_size=self.max_size,
            max_recipients=self.max_recipients, mx_max_size=self.mx_max_size,
            mx_max_recipients=self.mx_max_recipients, bounce_domain=self.bounce_domain,
            connections=_Connections(self), unauth_data=self.unauth_data,
            check_auth=self.auth.check, login_used=self.login_used,
            mx_accepts=self.mx_accepts, store=self.writer.store,
            draining=lambda: self.draining,
            sender_refusal=refusal if settings.SENDER_UNVERIFIED == "refuse" else None,
        )

    def connection_opened(self, ip: str | None, role: str) -> str | None:
        """Count a new connection; None, or the 421 reply that refuses it (logged here)."""
        if self.draining:
            log.info("refused connection from %s (%s port): shutting down", ip, role)
            return SHUTTING_DOWN
        refused = self.counts.open(ip)
        if refused is None:
            return None
        why, reply = refused
        if reply != AT_CAP:
            log.warning("refused connection from %s (%s port): %s", ip, role, why)
            return reply
        # At the cap, one line a minute: a flood of connections must not flood the log too.
        self._cap_refused += 1
        now = self.loop.time()
        if self._cap_logged_at is None or now - self._cap_logged_at >= AT_CAP_LOG_EVERY:
            log.warning(
                "connection cap reached: %d connections open, new ones refused with 421 4.7.0 "
                "(%d refused since the last such line; SMTP_MAX_CONNECTIONS, descriptor "
                "limit %d)", self.counts.total, self._cap_refused, self.fd_limit,
            )
            self._cap_logged_at = now
            self._cap_refused = 0
        return reply

    def connection_authenticated(self, ip: str | None) -> None:
        self.counts.authenticated(ip)

    def connection_closed(self, ip: str | None, authenticated: bool) -> None:
        self.counts.close(ip, authenticated)

    def login_used(self, login_id: int) -> None:
        now = self.loop.time()
        if now - self._last_used.get(login_id, -LAST_USED_EVERY) >= LAST_USED_EVERY:
            self._last_used[login_id] = now
            self.writer.touch(login_id)

    def mx_accepts(self, address: str) -> bool:
        """Whether the mx role takes ``address`` without AUTH: a genuine VERP address or one
        of SMTP_MX_ADDRESSES, at BOUNCE_DOMAIN."""
        local, _, domain = address.rpartition("@")
        if domain.lower() != self.bounce_domain:
            return False
        return (local.lower() in self.mx_addresses
                or parse_verp(key_for("verp"), address, settings.BOUNCE_DOMAIN) is not None)

    def reload_tls(self) -> bool:
        return tls.reload_context(self.tls_context, self.cert_file, self.key_file)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.fd_limit = descriptor_limit()  # runsmtp has raised it to the hard limit
        self.counts.max_total = connection_cap(settings.SMTP_MAX_CONNECTIONS, self.fd_limit)
        log.info("connection cap %d (SMTP_MAX_CONNECTIONS %d, descriptor limit %d)",
                 self.counts.max_total, settings.SMTP_MAX_CONNECTIONS, self.fd_limit)
        self.tls_context = tls.server_context(self.cert_file, self.key_file)
        if settings.METRICS_BIND:
            metrics.serve(settings.METRICS_BIND)
        self.writer = GroupWriter(self.loop, on_commit=self._queued)
        self.writer.start()
        if self.with_delivery:
            self.start_delivery()
        if self.with_intake:
            self.intake = IntakeWorker()
            self._intake_task = self.loop.create_task(self.intake.run())
            log.info("intake running")
        if self.with_webhooks:
            # Its own tasks and database thread: a hanging endpoint never holds up a session.
            self.webhooks = WebhookSender()
            self._webhooks_task = self.loop.create_task(self.webhooks.run())
            log.info("webhooks sender running (worker %s)", self.webhooks.worker_id)
        self.argon_pool = ThreadPoolExecutor(
            settings.SMTP_AUTH_THREADS, thread_name_prefix="auth-argon2"
        )
        self.db_pool = ThreadPoolExecutor(4, thread_name_prefix="auth-db")
        self.auth = Authenticator(self.argon_pool, self.db_pool)
        context = self.session_context()
        for spec in self.specs:
            server = await self.loop.create_server(
                lambda role=spec.role: self._session(context, role),
                host=self.bind,
                port=spec.port,
                # No ssl= even for implicit TLS: the session counts the connection against
                # the per-IP cap at TCP accept and then starts TLS itself.
                reuse_address=True,
                reuse_port=self.reuse_port or None,
                backlog=1024,
            )
            self._servers.append(server)
            log.info("listening on %s:%d (%s)", self.bind, spec.port, spec.role)

    def _session(self, context: SessionContext, role: str) -> RelaySMTP:
        session = RelaySMTP(context, role)
        self._sessions.add(session)  # so that a stop past its grace can cut it
        return session

    def start_delivery(self) -> None:
        transport = transport_for(settings.DELIVERY_MODE)
        if transport is None:
            log.error("delivery role not started: DELIVERY_MODE=%s has no transport; mail "
                      "stays queued", settings.DELIVERY_MODE)
            return
        self.delivery = DeliveryWorker(transport)
        self._delivery_task = self.loop.create_task(self.delivery.run())
        log.info("delivery running (%s mode, worker %s)", settings.DELIVERY_MODE,
                 self.delivery.worker_id)

    def _queued(self) -> None:
        if self.delivery is not None:
            self.delivery.wake()
        if self.intake is not None:
            self.intake.wake()

    async def drain(self) -> None:
        """Refuse what is new with 421 4.3.2; wait up to SMTP_STOP_GRACE for open sessions
        and deliveries in flight (whose leases are then given back); cut what is left."""
        self.draining = True
        deadline = self.loop.time() + self.stop_grace
        waits = [self._sessions_closed(deadline)]
        if self.delivery is not None:
            waits.append(self.delivery.stop(grace=self.stop_grace))
        await asyncio.gather(*waits)

    async def _sessions_closed(self, deadline: float) -> None:
        # A session is over once its transport is closing: a TLS one may wait for the
        # client's close_notify for a while after that, but it takes no more commands.
        while (open_sessions := [s for s in self._sessions if s.transport is not None]) \
                and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        if open_sessions:
            log.warning("grace period over: closing %d SMTP session(s) still open",
                        len(open_sessions))
            for session in open_sessions:
                session.close_connection()
        else:
            log.info("every SMTP session has ended")

    async def stop(self) -> None:
        await self.drain()
        for server in self._servers:
            server.close()
        # Messages already handed to the writer are committed and answered before we exit.
        await self.loop.run_in_executor(None, self.writer.stop)
        if self.delivery is not None:
            await asyncio.wait([self._delivery_task], timeout=5)
        if self.intake is not None:
            await self.intake.stop()
            await asyncio.wait([self._intake_task], timeout=5)
        if self.webhooks is not None:
            await self.webhooks.stop()
            await asyncio.wait([self._webhooks_task], timeout=5)
        await asyncio.sleep(0.1)
        self.argon_pool.shutdown(wait=False, cancel_futures=True)
        self.db_pool.shutdown(wait=False, cancel_futures=True)

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT; SIGHUP reloads the certificate."""
        self._stopping = asyncio.Event()
        await self.start()
        loop = self.loop
        loop.add_signal_handler(signal.SIGTERM, self._stopping.set)
        loop.add_signal_handler(signal.SIGINT, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_tls)
        ports = ", ".join([f"{s.port}/{s.role}" for s in self.specs]
                          + ([f"delivery ({settings.DELIVERY_MODE})"] if self.delivery else [])
                          + (["intake"] if self.intake else [])
                          + (["webhooks"] if self.webhooks else []))
        log.info("runsmtp ready on %s: %s (%s event loop)", self.bind, ports,
                 type(loop).__module__.split(".")[0])
        await self._stopping.wait()
        log.info("runsmtp stopping: new connections get 421, %g s for what is open",
                 self.stop_grace)
        await self.stop()
        log.info("runsmtp stopped")


class _Connections:
    """RelayServer's connection accounting as SessionContext.connections."""

    def __init__(self, server: RelayServer):
        self.opened = server.connection_opened
        self.authenticated = server.connection_authenticated
        self.closed = server.connection_closed
