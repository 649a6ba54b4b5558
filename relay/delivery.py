"""The delivery worker (runsmtp's `delivery` role): claim due recipients (with their
messages and the suppression lookups of the whole batch in one database call), then each message
goes through a short list of named steps: load, check suppression, render (the first time, also
store the URLs behind its tracking tokens), send, record.

Rendering runs in a process pool (relay.render_pool); a render that fails, crashes or times out
sends the message unchanged (minus X-SMTPeter-* headers) and records a `warning` event. Sending
goes through a Transport: `CaptureTransport` (DELIVERY_MODE=capture) or the mx transport
(relay.outbound: relay.mx routes, pooled relay.smtp_out sessions). Recipients of one message
to one destination share a transaction only when their bytes and envelope sender are
identical. Outcomes are written in batches by one recorder task; claims are bounded by
DELIVERY_BATCH, so memory stays bounded however long the queue is.

Wake-up: the queue writer of this process calls wake() after each commit. On PostgreSQL every
commit that queues mail (the queue writer of any process, DSNs, staff's retry and release) also
sends NOTIFY (relay.queue_writer.announce_new_mail), and each worker LISTENs on its own
connection (smtpeter_site.db.listen): mail accepted by another process is claimed at once. The
poll (DELIVERY_POLL_INTERVAL) stays as the fallback while that connection is down. DSNs are
queued with the outcomes that earn them (relay.reports_out, in the recorder's transaction) and
wake this worker after that commit.
"""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

from django.conf import settings
from django.db import connection

from events.models import Event
from events.services import NewEvent
from features.overrides import IGNORE_SUPPRESSION, strip_smtpeter_headers
from features.render import envelope_sender
from features.services import context as render_context
from smtpeter_site.db import listen, with_live_connection

from . import metrics, queue, suppression
from .queue import Claim, QueuedMessage, Result
from .queue_writer import NEW_MAIL
from .render_pool import RenderFailed, RenderJob, RenderOutput, RenderPool, render_job
from .signing import SignBatcher, plan_message, sign_rendered

log = logging.getLogger("relay.delivery")
RENDER_CHUNK = 50  # recipients per render job: a big claim of one message uses every process
RENDERED_FEATURES = ("clicktracking", "openstracking", "inlinecss")  # change the bytes
TRACKING_FEATURES = ("clicktracking", "openstracking")  # put tokens in: store the URL lists
RECORD_EVERY = 0.05  # seconds an outcome may wait to be written with others
STOP_GRACE = 10.0  # seconds a stopping worker lets sends in flight finish
INLINE_STRIP = 256 * 1024  # header scan on the loop up to this size; a thread beyond (a hop costs)


# -- the transport interface ------------------------------------------------------------------


@dataclass(frozen=True)
class Rcpt:
    address: str
    notify: str = ""  # RCPT NOTIFY= as received ("" when none)
    orcpt: str = ""  # RCPT ORCPT= as received, decoded: "rfc822;bob@example.org"


@dataclass
class RecipientOutcome:
    """What the next hop said about one recipient. status: delivered, deferred or failed."""

    status: str
    code: int | None = None
    enhanced: str = ""
    text: str = ""
    host: str = ""
    ip: str | None = None
    port: int | None = None
    tls_version: str = ""
    tls_cipher: str = ""
    duration_ms: int = 0
    captured: bool = False  # stored for the Outbox instead of sent
    dsn_passed: bool = False  # the next hop took NOTIFY/ORCPT (else NOTIFY=SUCCESS: "relayed")
    tls_note: str = ""  # why TLS was not used (opportunistic STARTTLS given up, RFC 7435)


class Transport(Protocol):
    async def send(self, route_key: str, mail_from: str, recipients: list[Rcpt], data: bytes,
                   ret: str, envid: str) -> list[RecipientOutcome]:
        """One SMTP transaction to the destination of route_key (the recipients' domain,
        lower-case): MAIL FROM mail_from (RET, ENVID), a RCPT per recipient, data with CRLF
        line ends. One outcome per recipient, in order; a reply is an outcome, never an
        exception."""
        ...

    async def close(self) -> None: ...


class CaptureTransport:
    """DELIVERY_MODE=capture: nothing leaves; every recipient is delivered with the captured
    mark. The recorder stores the bytes with the outcome, in one transaction (a crash cannot
    leave one without the other)."""

    async def send(self, route_key: str, mail_from: str, recipients: list[Rcpt], data: bytes,
                   ret: str, envid: str) -> list[RecipientOutcome]:
        return [RecipientOutcome("delivered", 250, "2.0.0", "captured (DELIVERY_MODE=capture)",
                                 host="capture", captured=True) for _ in recipients]

    async def close(self) -> None:
        return None


def transport_for(mode: str) -> Transport | None:
    """The transport of a DELIVERY_MODE, or None for an unknown mode."""
    if mode == "capture":
        return CaptureTransport()
    if mode == "mx":
        from .outbound import MxTransport  # it imports this module's types

        return MxTransport.from_settings()
    return None


def route_key(address: str) -> str:
    """Which destination a recipient goes to: its domain, lower-case."""
    return address.rpartition("@")[2].lower()


def new_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class Prefetched:
    """What one claim batch read ahead: its messages (raw None for big ones; each taken out
    by its delivery, so a delivered message's bytes are not kept until the whole batch is
    done), and which of their recipients their owners suppress ((owner id, lower-cased
    address): reason) for the message ids in ``checked``. A message not read ahead is loaded
    and checked on its own."""

    messages: dict[int, QueuedMessage]
    suppressed: dict[tuple[int, str], str]
    checked: frozenset[int] = frozenset()


NOTHING_PREFETCHED = Prefetched({}, {})


def prefetch(claims: list[Claim]) -> Prefetched:
    """The messages of these claims and their suppression lookups: two queries however many
    messages (on a database thread)."""
    messages = queue.load_messages(sorted({c.message_id for c in claims}))
    addresses: dict[int, set[str]] = defaultdict(set)
    for c in claims:
        m = messages.get(c.message_id)
        if m is not None and suppression_applies(m):
            addresses[m.owner_id].add(c.address)
    return Prefetched(messages, suppression.for_owners(addresses), frozenset(messages))


def suppression_applies(message: QueuedMessage) -> bool:
    """Whether the owner's suppression list stops this message's recipients: not for DSNs,
    mail without an owner, or X-SMTPeter-IgnoreSuppression: true (read at accept time)."""
    return (message.owner_id is not None and not message.is_dsn
            and not (message.features or {}).get(IGNORE_SUPPRESSION))


@dataclass
class Rendered:
    """Per recipient id: (bytes to send, envelope sender)."""

    by_recipient: dict[int, tuple[bytes, str]]
    signed: bool = False  # DKIM-signed in the render job (relay.signing)
    sign_error: str = ""  # why the render job could not sign (the bytes are unsigned)


# -- the worker -------------------------------------------------------------------------------


class DeliveryWorker:
    def __init__(self, transport: Transport, renderer: RenderPool | None = None, *,
                 worker_id: str | None = None, batch: int | None = None,
                 concurrency: int | None = None, poll: float | None = None,
                 lease: float | None = None):
        self.transport = transport
        self.renderer = renderer or RenderPool(settings.RENDER_WORKERS, settings.RENDER_TIMEOUT)
        self.signer = SignBatcher(self.renderer)  # unrendered mail: one job per claim batch
        self.worker_id = worker_id or new_worker_id()
        self.batch = batch or settings.DELIVERY_BATCH
        self.poll = poll or settings.DELIVERY_POLL_INTERVAL
        self.claim_interval = settings.DELIVERY_CLAIM_INTERVAL
        self.lease = lease or settings.DELIVERY_LEASE
        self.per_transaction = settings.DELIVERY_TRANSACTION_RECIPIENTS
        self._sends = asyncio.Semaphore(concurrency or settings.DELIVERY_CONCURRENCY)
        self._db_threads = 2
        self._db_pool = ThreadPoolExecutor(self._db_threads, thread_name_prefix="delivery-db")
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._room = asyncio.Event()
        # Clear from a claim until its tasks exist: stop() waits for it, or a SIGTERM in
        # between gives the claimed recipients back instead of delivering them.
        self._settled = asyncio.Event()
        self._settled.set()
        self._stopping = False
        self._closing = False
        self._recorder_task: asyncio.Task | None = None
        self._heartbeat_task: asyncio.Task | None = None
        self._listen_task: asyncio.Task | None = None
        self.inflight: set[int] = set()  # claimed, outcome not yet written
        self._tasks: set[asyncio.Task] = set()
        self._results: list[Result] = []
        self._events: list[NewEvent] = []  # warnings, written with the next outcomes
        self._recorded = asyncio.Event()
        self._warned: OrderedDict[tuple[int, str], None] = OrderedDict()
        self.delivered = 0

    def wake(self) -> None:
        """New mail was committed: claim now rather than at the next poll."""
        self._wakeup.set()

    async def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        # Every call here is one transaction, safe to repeat on a new connection.
        return await asyncio.get_running_loop().run_in_executor(
            self._db_pool, with_live_connection, fn, *args)

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """Claim and deliver until stop(); stop() ends the recorder and the heartbeat."""
        self._loop = asyncio.get_running_loop()
        self._recorder_task = asyncio.create_task(self._recorder())
        self._heartbeat_task = asyncio.create_task(self._heartbeat())
        self._listen_task = asyncio.create_task(listen(NEW_MAIL, self.wake))
        try:
            await self.renderer.start()
        except Exception as exc:  # noqa: BLE001 - renders fall back to unchanged mail
            log.error("render processes did not start: %s", exc)
        failures = 0
        next_claim = 0.0
        while not self._stopping:
            room = self.batch - len(self.inflight)
            if room < max(1, self.batch // 4):
                self._room.clear()
                await self._room.wait()
                continue
            # Mail committed in small groups wakes us every few messages: claims (a few
            # queries each) at most every DELIVERY_CLAIM_INTERVAL unless the last one was full.
            pause = next_claim - self._loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
                continue  # room may have changed meanwhile
            self._wakeup.clear()
            self._settled.clear()
            try:
                claims = await self._db(queue.claim, self.worker_id, room)
            except Exception as exc:  # noqa: BLE001 - the database comes back; we go on
                self._settled.set()
                pause = min(self.poll, 2 ** min(failures, 5) * 0.25)
                failures += 1
                log.error("claiming failed (%s: %s); next try in %g s",
                          type(exc).__name__, exc, pause)
                await asyncio.sleep(pause)
                continue
            failures = 0
            if len(claims) < room:
                next_claim = self._loop.time() + self.claim_interval
            if not claims:
                self._settled.set()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), self.poll)
                except TimeoutError:
                    pass
                continue
            by_message: dict[int, list[Claim]] = defaultdict(list)
            for c in claims:
                by_message[c.message_id].append(c)
                self.inflight.add(c.recipient_id)
            try:
                ahead = await self._db(prefetch, claims)
            except Exception as exc:  # noqa: BLE001 - each message then reads its own
                log.error("reading a claim batch's messages failed (%s: %s); each message "
                          "is read alone", type(exc).__name__, exc)
                ahead = NOTHING_PREFETCHED
            for message_id, group in by_message.items():
                task = asyncio.create_task(self.deliver_message(message_id, group, ahead))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            self._settled.set()

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop claiming; let sends in flight finish for ``grace`` s; give back what is left."""
        self._stopping = True
        self._wakeup.set()
        self._room.set()
        try:
            await asyncio.wait_for(self._settled.wait(), grace)
        except TimeoutError:
            pass
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)
        # The recorder writes what is left and ends; a write it is in the middle of finishes
        # first, so no lease is given back under an outcome being written.
        self._closing = True
        self._recorded.set()
        if self._recorder_task is not None:
            await self._recorder_task
        for task in (self._heartbeat_task, self._listen_task):
            if task is not None:
                task.cancel()
        if self._listen_task is not None:
            await asyncio.wait([self._listen_task], timeout=2)
        unsent = sorted(self.inflight)
        if unsent:
            log.warning("stopping with %d recipient(s) unfinished: given back to the queue "
                        "(any that were on the wire may be delivered twice)", len(unsent))
            try:
                await self._db(queue.unclaim, self.worker_id, unsent)
            except Exception as exc:  # noqa: BLE001 - their leases expire on their own
                log.error("giving back leases failed: %s", exc)
        self.renderer.close()
        await self.transport.close()
        # Each thread closes its own connection (a barrier puts one close on each thread).
        barrier = threading.Barrier(self._db_threads, timeout=5)
        await asyncio.gather(*(self._db(_close_connection, barrier)
                               for _ in range(self._db_threads)), return_exceptions=True)
        self._db_pool.shutdown(wait=True)

    # -- one message: the steps ------------------------------------------------------------

    async def deliver_message(self, message_id: int, claims: list[Claim],
                              ahead: Prefetched = NOTHING_PREFETCHED) -> None:
        try:
            message = await self.load(message_id, claims, ahead)
            if message is None:
                return
            claims = await self.check_suppression(message, claims, ahead)
            if not claims:
                return
            plan = await plan_message(self, message)  # relay.signing: who DKIM-signs
            rendered = await self.render(message, claims, plan.signers if plan else ())
            rendered = await sign_rendered(self, message, rendered, plan)
            await self.send(message, claims, rendered)
        except Exception as exc:  # noqa: BLE001 - this message is deferred, the worker goes on
            log.exception("delivery of message %s failed", message_id)
            done = {r.recipient_id for r in self._results}
            self._add([Result(c.recipient_id, "deferred", 451, "4.3.0",
                              f"Internal error ({type(exc).__name__}), will retry",
                              attempted=False)
                       for c in claims if c.recipient_id in self.inflight
                       and c.recipient_id not in done])

    async def load(self, message_id: int, claims: list[Claim],
                   ahead: Prefetched = NOTHING_PREFETCHED) -> QueuedMessage | None:
        message = ahead.messages.pop(message_id, None)
        if message is None or message.raw is None:  # big, or not read ahead
            message = await self._db(queue.load_message, message_id)
        if message is None:  # deleted by staff since the claim
            self._forget([c.recipient_id for c in claims])
        return message

    async def check_suppression(self, message: QueuedMessage, claims: list[Claim],
                                ahead: Prefetched = NOTHING_PREFETCHED) -> list[Claim]:
        """Recipients on the owner's suppression list fail at once (550 5.7.1 suppressed:
        reason) without an attempt; a failure event and the usual DSN rules follow. The rest
        go on. X-SMTPeter-IgnoreSuppression: true (read at accept time) skips the check."""
        if not suppression_applies(message):
            return claims
        if message.id in ahead.checked:
            found = {address: reason for (owner, address), reason in ahead.suppressed.items()
                     if owner == message.owner_id}
        else:
            found = await self._db(suppression.for_message, message.id,
                                   [c.address for c in claims])
        stopped = [c for c in claims if c.address.strip().lower() in found]
        if not stopped:
            return claims
        for c in stopped:
            log.info("%s: to=<%s> status=failed (suppressed: %s)", message.queue_id, c.address,
                     found[c.address.strip().lower()])
        self._add([suppressed_result(c, found[c.address.strip().lower()]) for c in stopped])
        metrics.failed_without_attempt(len(stopped))
        return [c for c in claims if c.address.strip().lower() not in found]

    async def render(self, message: QueuedMessage, claims: list[Claim],
                     signers: tuple = ()) -> Rendered:
        """The bytes and envelope sender of each recipient, features applied off the loop
        (and DKIM-signed there with signers, when the message is rendered at all)."""
        features = message.features or {}
        ctx = render_context(message.id, 0, message.mail_from)
        if any(features.get(f) for f in RENDERED_FEATURES):
            try:
                return await self._render_in_pool(message, claims, ctx, signers)
            except RenderFailed as exc:
                reason = str(exc)
            except Exception as exc:  # noqa: BLE001 - the message goes out unchanged
                log.exception("render of message %s failed", message.queue_id)
                reason = f"render failed ({type(exc).__name__})"
            log.warning("message %s: %s; sent unchanged", message.queue_id, reason)
            await self._warn(message, reason, {"action": "sent unchanged"})
        unchanged = (strip_smtpeter_headers(message.raw) if len(message.raw) <= INLINE_STRIP
                     else await asyncio.to_thread(strip_smtpeter_headers, message.raw))
        return Rendered({
            c.recipient_id: (unchanged, envelope_sender(
                features, replace(ctx, recipient_id=c.recipient_id, recipient=c.address)))
            for c in claims})

    async def _render_in_pool(self, message: QueuedMessage, claims: list[Claim],
                              ctx, signers: tuple = ()) -> Rendered:
        # The first render of a message with tracking also brings back its URL lists.
        lists = not message.links_stored and any(
            (message.features or {}).get(f) for f in TRACKING_FEATURES)
        jobs = [
            RenderJob(message.id, message.raw, message.features, settings.CSS_INLINER, ctx,
                      [(c.recipient_id, c.address) for c in claims[i:i + RENDER_CHUNK]],
                      lists=lists and i == 0, signers=tuple(signers))
            for i in range(0, len(claims), RENDER_CHUNK)
        ]
        outputs: list[RenderOutput] = await asyncio.gather(
            *(self.renderer.run(render_job, job) for job in jobs))
        if lists:
            await self.store_links(message, outputs[0])
        by_recipient = {}
        warnings: dict[str, None] = {}
        for out in outputs:
            for rid, (index, sender) in out.recipients.items():
                by_recipient[rid] = (out.bodies[index], sender)
            warnings.update(dict.fromkeys(out.warnings))
        for warning in warnings:
            await self._warn(message, warning, {"action": "part left as it was"})
        return Rendered(by_recipient, signed=bool(signers),
                        sign_error=next((o.sign_error for o in outputs if o.sign_error), ""))

    async def store_links(self, message: QueuedMessage, output: RenderOutput) -> None:
        """Store what the tracking tokens' indexes stand for, before the first token goes out:
        a click then looks its URL up instead of preparing the message again."""
        if output.links is None or output.images is None:
            return
        try:
            await self._db(queue.store_links, message.id, output.links, output.images)
        except Exception as exc:  # noqa: BLE001 - clicks derive the lists from the message
            log.error("storing the tracked links of message %s failed (%s: %s); clicks will "
                      "derive them from the message", message.queue_id, type(exc).__name__, exc)

    async def send(self, message: QueuedMessage, claims: list[Claim],
                   rendered: Rendered) -> None:
        """One transaction per destination and identical (bytes, sender), at most
        DELIVERY_TRANSACTION_RECIPIENTS recipients each; transactions run concurrently up to
        DELIVERY_CONCURRENCY (the transport decides which share a connection)."""
        groups: dict[tuple[str, int, str], list[Claim]] = defaultdict(list)
        bodies: dict[int, bytes] = {}
        for c in claims:
            data, sender = rendered.by_recipient[c.recipient_id]
            bodies[id(data)] = data
            groups[(route_key(c.address), id(data), sender)].append(c)
        sends = []
        for (route, body_id, sender), members in groups.items():
            for i in range(0, len(members), self.per_transaction):
                sends.append(self._transaction(message, route, sender, bodies[body_id],
                                               members[i:i + self.per_transaction]))
        await asyncio.gather(*sends)

    async def _transaction(self, message: QueuedMessage, route: str, sender: str, data: bytes,
                           members: list[Claim]) -> None:
        rcpts = [Rcpt(c.address, c.notify, c.orcpt) for c in members]
        async with self._sends:
            try:
                outcomes = await self.transport.send(route, sender, rcpts, data, message.ret,
                                                     message.envid)
                if len(outcomes) != len(rcpts):
                    raise ValueError(f"{len(outcomes)} outcomes for {len(rcpts)} recipients")
            except Exception as exc:  # noqa: BLE001 - a transport bug defers, never drops
                log.exception("transport failed for message %s to %s", message.queue_id, route)
                outcomes = [RecipientOutcome("deferred", 451, "4.4.0",
                                             f"Local transport error ({type(exc).__name__})")
                            for _ in rcpts]
        for r, o in zip(rcpts, outcomes, strict=True):
            log.info("%s: to=<%s> from=<%s> relay=%s status=%s (%s %s %s)", message.queue_id,
                     r.address, sender, o.host or route, o.status, o.code or "-", o.enhanced,
                     o.text[:200])
        metrics.outcomes(route, message.received_at, outcomes)
        self.record(members, outcomes, sender, data)

    def record(self, members: list[Claim], outcomes: list[RecipientOutcome], sender: str,
               data: bytes) -> None:
        """Queue the outcomes for the recorder (written in batches, one transaction each)."""
        results = []
        for c, o in zip(members, outcomes, strict=True):
            status = o.status if o.status in ("delivered", "failed") else "deferred"
            results.append(Result(
                c.recipient_id, status, o.code, o.enhanced, o.text, o.host, o.ip, o.port,
                o.tls_version, o.tls_cipher, o.duration_ms, mail_from=sender,
                capture=data if o.captured and status == "delivered" else None,
                dsn_passed=o.dsn_passed, tls_note=o.tls_note))
        self._add(results)

    # -- bookkeeping -----------------------------------------------------------------------

    def _add(self, results: list[Result]) -> None:
        self._results.extend(results)
        if len(self._results) >= self.batch:
            self._recorded.set()

    def _forget(self, recipient_ids: list[int]) -> None:
        self.inflight.difference_update(recipient_ids)
        self._room.set()

    async def _recorder(self) -> None:
        """The one writer of outcomes: every RECORD_EVERY, or sooner when a batch is full."""
        failures = 0
        while True:
            try:
                await asyncio.wait_for(self._recorded.wait(), RECORD_EVERY)
            except TimeoutError:
                pass
            self._recorded.clear()
            failures = 0 if await self._flush() else failures + 1
            if self._closing and (not (self._results or self._events) or failures >= 3):
                if self._results or self._events:
                    log.error("stopping with %d outcome(s) not written: their recipients "
                              "are delivered again once their leases expire",
                              len(self._results))
                return

    async def _flush(self) -> bool:
        if not (self._results or self._events):
            return True
        batch, self._results = self._results, []
        events, self._events = self._events, []
        try:
            await self._db(partial(queue.record_results, on_dsn=self._dsn_queued,
                                   events=events), self.worker_id, batch)
        except Exception as exc:  # noqa: BLE001 - kept and written with the next batch
            log.error("writing %d outcome(s) failed (%s: %s); trying again",
                      len(batch), type(exc).__name__, exc)
            self._results = batch + self._results
            self._events = events + self._events
            await asyncio.sleep(1)
            return False
        self.delivered += sum(1 for r in batch if r.outcome == "delivered")
        self._forget([r.recipient_id for r in batch])
        return True

    def _dsn_queued(self, message_ids: list[int]) -> None:
        # Called on a database thread after the commit that queued DSNs: claim them now.
        try:
            self._loop.call_soon_threadsafe(self.wake)
        except RuntimeError:  # the loop is gone (stopping): the next run's poll finds them
            pass

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            if self.inflight:
                try:
                    await self._db(queue.renew, self.worker_id, sorted(self.inflight))
                except Exception as exc:  # noqa: BLE001 - tried again at the next beat
                    log.error("renewing leases failed: %s", exc)

    async def _warn(self, message: QueuedMessage, reason: str, data: dict) -> None:
        # Once per message and reason in this process (a big message comes in many claims).
        key = (message.id, reason)
        if key in self._warned:
            return
        self._warned[key] = None
        while len(self._warned) > 10_000:
            self._warned.popitem(last=False)
        # Written by the recorder with the next outcomes (one transaction for a batch's
        # warnings, not one each: 0.2 ms of the loop per plain message, bench/README.md).
        self._events.append(NewEvent(Event.Type.WARNING, message.id, None,
                                     {"reason": reason, **data}))


def suppressed_result(claim: Claim, reason: str) -> Result:
    """The outcome of a suppressed recipient: a failure decided here, no attempt made."""
    return Result(claim.recipient_id, "failed", 550, "5.7.1", f"suppressed: {reason}",
                  attempted=False)


def _close_connection(barrier: threading.Barrier) -> None:
    barrier.wait()
    connection.close()


