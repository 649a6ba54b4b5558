"""The webhooks role of runsmtp: claims due outbox rows, POSTs them signed (Standard Webhooks,
through the `standardwebhooks` library) with aiohttp, and records what each came to.

Its own tasks on the loop and one database thread of its own: a slow or hanging endpoint costs
only its own slots (WEBHOOK_ENDPOINT_CONCURRENCY, each POST at most WEBHOOK_TIMEOUT), never an
SMTP session or a delivery. Outcomes are written in batches (one transaction for whatever has
finished meanwhile).

aiohttp rather than httpx: its resolver is pluggable, so the addresses the SSRF check passes
are exactly the ones it connects to (no second lookup that DNS rebinding could answer
differently); and it is the faster of the two with many requests in flight on one loop.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from django.conf import settings
from django.db import connection
from standardwebhooks import Webhook

from smtpeter_site.db import with_live_connection

from . import webhooks
from .webhooks import Job, Outcome

log = logging.getLogger("events.sender")
USER_AGENT = "smtpeter-webhooks/1"
RETRY_AFTER_MAX = 86400.0  # seconds: a longer Retry-After is read as this
CLAIM_GAP = 0.02  # seconds between two claims at least


class RefusedAddress(OSError):
    """The host resolves only to addresses the SSRF rules refuse."""


class CheckedResolver(AbstractResolver):
    """Resolves like aiohttp's own resolver, then drops every address address_allowed()
    refuses: the connector connects only to what is returned here."""

    def __init__(self) -> None:
        self._resolver = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        allowed = [r for r in found if webhooks.address_allowed(r["host"])]
        if not allowed:
            raise RefusedAddress(
                f"{host} resolves only to refused addresses "
                f"({', '.join(sorted({r['host'] for r in found}))}; WEBHOOK_ALLOW_PRIVATE)")
        return allowed

    async def close(self) -> None:
        await self._resolver.close()


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_MAX)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(when.timestamp() - (now or time.time()), 0.0), RETRY_AFTER_MAX)


def send_problem(url: str) -> str:
    """Why the sender will not POST to this URL now ("" when it will): an http:// URL without
    WEBHOOK_ALLOW_HTTP (saved while it was set), or an IP literal the SSRF rules refuse
    (aiohttp does not ask the resolver about literals)."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and settings.WEBHOOK_ALLOW_HTTP):
        return f"{parts.scheme}:// URLs are not allowed (WEBHOOK_ALLOW_HTTP)"
    host = parts.hostname or ""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return ""
    return "" if webhooks.address_allowed(host) else (
        f"{host} is a refused address (WEBHOOK_ALLOW_PRIVATE)")


class WebhookSender:
    """Claims up to WEBHOOK_CONCURRENCY rows at once, at most WEBHOOK_ENDPOINT_CONCURRENCY per
    endpoint; woken when this process records an event with an outbox row, when a POST ends,
    and otherwise every WEBHOOK_POLL_INTERVAL."""

    def __init__(self) -> None:
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:webhooks"[:64]
        self.concurrency = settings.WEBHOOK_CONCURRENCY
        self.per_endpoint = settings.WEBHOOK_ENDPOINT_CONCURRENCY
        self.timeout = settings.WEBHOOK_TIMEOUT
        self.poll = settings.WEBHOOK_POLL_INTERVAL
        self.busy: dict[int, int] = {}  # endpoint id -> POSTs in flight
        self.in_flight = 0
        self.sent = 0
        self._done: list[Outcome] = []
        self._signers: dict[tuple[int, str], Webhook] = {}
        self._tasks: set[asyncio.Task] = set()
        self._wakeup = asyncio.Event()
        self._flush_wakeup = asyncio.Event()
        self._stopping = False
        self._freed = False  # a finished POST freed a slot since the last claim
        self._fresh = False  # new rows were recorded in this process since the last claim
        self._pool: ThreadPoolExecutor | None = None
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        """New rows are due: claim them at once."""
        self._fresh = True
        self._wakeup.set()

    def _wake_threadsafe(self) -> None:
        # Called after a commit on any thread of this process (webhooks.listener).
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.wake)

    async def _db(self, fn, *args):
        return await self._loop.run_in_executor(self._pool, with_live_connection, fn, *args)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="webhooks-db")
        # No limit per host: many customers' endpoints may share one host (a SaaS receiver);
        # the limit is per endpoint, kept by the claims.
        connector = aiohttp.TCPConnector(resolver=CheckedResolver(), limit=self.concurrency)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"User-Agent": USER_AGENT}, trust_env=False)
        webhooks.listener = self._wake_threadsafe
        flusher = self._loop.create_task(self._flush_loop())
        failures = 0
        last_claim = 0.0
        try:
            while not self._stopping:
                # Under load every finished POST frees a slot: claims at most every CLAIM_GAP
                # take the freed slots together instead of one claim per POST. A new event
                # (or the poll) is claimed at once.
                until = last_claim + CLAIM_GAP
                while self._freed and not self._fresh and not self._stopping:
                    wait = until - self._loop.time()
                    if wait <= 0:
                        break
                    self._wakeup.clear()
                    try:  # a new event ends the wait
                        await asyncio.wait_for(self._wakeup.wait(), wait)
                    except TimeoutError:
                        break
                if self._stopping:
                    break
                last_claim = self._loop.time()
                self._freed = self._fresh = False
                self._wakeup.clear()
                room = self.concurrency - self.in_flight
                jobs: list[Job] = []
                if room > 0:
                    saturated = [e for e, n in self.busy.items() if n >= self.per_endpoint]
                    endpoint_room = {e: self.per_endpoint - n for e, n in self.busy.items()}
                    try:
                        jobs = await self._db(webhooks.claim, self.worker_id, room,
                                              endpoint_room, saturated)
                    except Exception as exc:  # noqa: BLE001 - the database comes back
                        if self._stopping:
                            break
                        pause = min(self.poll, 2 ** min(failures, 5) * 0.25)
                        failures += 1
                        log.error("webhook claim failed (%s: %s); next try in %g s",
                                  type(exc).__name__, exc, pause)
                        await asyncio.sleep(pause)
                        continue
                    failures = 0
                for job in jobs:
                    self._start(job)
                if len(jobs) < room or room <= 0:
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), self.poll)
                    except TimeoutError:
                        pass
        finally:
            if webhooks.listener == self._wake_threadsafe:
                webhooks.listener = None
            flusher.cancel()

    def _start(self, job: Job) -> None:
        self.in_flight += 1
        self.busy[job.endpoint_id] = self.busy.get(job.endpoint_id, 0) + 1
        task = self._loop.create_task(self._post(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _signer(self, job: Job) -> Webhook:
        key = (job.endpoint_id, job.secret)
        signer = self._signers.get(key)
        if signer is None:
            if len(self._signers) > 10000:
                self._signers.clear()
            signer = self._signers[key] = Webhook(job.secret)
        return signer

    async def _post(self, job: Job) -> None:
        started = time.monotonic()
        try:
            outcome = await self._attempt(job)
        except Exception as exc:  # noqa: BLE001 - one POST must never stop the sender
            outcome = Outcome(job.delivery_id, job.endpoint_id, None,
                              f"{type(exc).__name__}: {exc}")
        outcome.duration_ms = int((time.monotonic() - started) * 1000)
        if not outcome.ok:
            log.info("webhook %s to endpoint %s failed: %s", job.webhook_id, job.endpoint_id,
                     f"HTTP {outcome.status}" if outcome.status else outcome.error)
        self.in_flight -= 1
        left = self.busy.get(job.endpoint_id, 1) - 1
        if left > 0:
            self.busy[job.endpoint_id] = left
        else:
            self.busy.pop(job.endpoint_id, None)
        self._done.append(outcome)
        self._flush_wakeup.set()
        self._freed = True
        self._wakeup.set()

    async def _attempt(self, job: Job) -> Outcome:
        refused = send_problem(job.url)
        if refused:
            log.warning("webhook %s to endpoint %s refused: %s", job.webhook_id,
                        job.endpoint_id, refused)
            return Outcome(job.delivery_id, job.endpoint_id, None, f"refused: {refused}")
        now = datetime.now(UTC)
        body = job.body.decode()
        headers = {
            "Content-Type": "application/json",
            "webhook-id": job.webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer(job).sign(job.webhook_id, now, body),
        }
        try:
            async with self._session.post(job.url, data=job.body, headers=headers,
                                          allow_redirects=False) as resp:
                excerpt = (await resp.content.read(webhooks.EXCERPT)).decode(
                    resp.charset or "utf-8", errors="replace")
                return Outcome(job.delivery_id, job.endpoint_id, resp.status, "", 0, excerpt,
                               retry_after(resp.headers.get("Retry-After")))
        except TimeoutError:
            return Outcome(job.delivery_id, job.endpoint_id, None,
                           f"no answer within {self.timeout:g} s")
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RefusedAddress):
                log.warning("webhook %s to endpoint %s refused: %s", job.webhook_id,
                            job.endpoint_id, exc.os_error)
                return Outcome(job.delivery_id, job.endpoint_id, None,
                               f"refused: {exc.os_error}")
            return Outcome(job.delivery_id, job.endpoint_id, None,
                           f"connection failed: {exc.os_error or exc}")
        except aiohttp.ClientError as exc:
            return Outcome(job.delivery_id, job.endpoint_id, None,
                           f"{type(exc).__name__}: {exc}")

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_wakeup.wait()
            self._flush_wakeup.clear()
            await self._flush()

    async def _flush(self) -> None:
        while self._done:
            batch, self._done = self._done, []
            try:
                await self._db(webhooks.record_outcomes, self.worker_id, batch)
                self.sent += sum(o.ok for o in batch)
            except Exception as exc:  # noqa: BLE001 - the leases expire; rows go again
                log.error("webhook outcomes not stored (%s: %s); %d row(s) will be sent again "
                          "after their lease", type(exc).__name__, exc, len(batch))
                return

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming; let POSTs in flight finish for up to ``grace`` seconds, store their
        outcomes; rows still in flight go again after their lease."""
        self._stopping = True
        self._wakeup.set()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        if self._pool is not None:
            await self._flush()
            try:
                await self._db(connection.close)
            except Exception:  # noqa: BLE001, S110 - closing a dead connection
                pass
            self._pool.shutdown(wait=True)
        if self._session is not None:
            await self._session.close()
