"""The delivery step that DKIM-signs rendered mail (senders.dkim does the signing, in the
render processes), between render and send: so the bytes sent, and the bytes captured in
capture mode, carry the signature.

Who signs (senders.services decides, cached here per process for SIGNER_CACHE_SECONDS):
- From domain (or a parent) a verified sender domain of the message's owner: its active keys.
- A DSN (the relay's own mail): the relay's key, DKIM_RELAY_DOMAIN.
- Anything else: the relay's key too, and a warning event on the message page saying the
  signature is not aligned with From and which domain to verify (SENDER_UNVERIFIED=refuse
  refuses such mail at DATA already; what still arrives here, say after a domain lapsed, is
  treated the same way, never sent unaligned without a word).
A signing failure sends the message unsigned and records a warning, as a render failure does.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings

from senders import services as senders
from senders.dkim import Signer, from_domain

from .render_pool import RenderFailed, RenderPool, sign_job

log = logging.getLogger("relay.signing")
SIGNER_CACHE_SECONDS = 60.0  # a lapsed domain or a rotated key is seen this much later at most
UNALIGNED_CACHE_SECONDS = 5.0
_KEEP = 1000


@dataclass(frozen=True)
class Plan:
    signers: tuple[Signer, ...]
    warning: str = ""  # recorded once per message when set


_plans: OrderedDict[tuple, tuple[float, Plan]] = OrderedDict()


def _remember(cache: OrderedDict, key, value) -> None:
    cache[key] = value
    while len(cache) > _KEEP:
        cache.popitem(last=False)


def cached_plan(owner_id: int | None, is_dsn: bool, domain: str) -> Plan | None:
    """The plan decided for this owner and From domain in the last SIGNER_CACHE_SECONDS (an
    unaligned one: UNALIGNED_CACHE_SECONDS), or None. No database: the event loop asks it."""
    cached = _plans.get((owner_id, is_dsn, domain))
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    return None


def plan_for(owner_id: int | None, is_dsn: bool, domain: str) -> Plan:
    """Who signs mail of owner_id with From domain ``domain`` (a database thread runs it)."""
    plan = cached_plan(owner_id, is_dsn, domain)
    if plan is not None:
        return plan
    plan = _decide(owner_id, is_dsn, domain)
    # An unaligned plan is kept briefly: a domain verified a moment ago soon signs its own.
    ttl = UNALIGNED_CACHE_SECONDS if plan.warning else SIGNER_CACHE_SECONDS
    _remember(_plans, (owner_id, is_dsn, domain), (time.monotonic() + ttl, plan))
    return plan


def _decide(owner_id: int | None, is_dsn: bool, domain: str) -> Plan:
    if not is_dsn:
        found = senders.signers_for(owner_id, domain)
        if found is not None:
            return Plan(tuple(found[1]))
    relay = senders.relay_signer()
    if is_dsn:
        return Plan((relay,))
    what = f"From domain {domain}" if domain else "a message without a From address"
    return Plan((relay,), f"{what} is not a verified sender domain: DKIM-signed as "
                          f"{relay.domain} only, not aligned with From (verify {domain or 'it'} "
                          "under Sender domains)")


def forget() -> None:
    """Drop the cached decisions (tests; a domain just verified)."""
    _plans.clear()


async def plan_message(worker, message) -> Plan | None:
    """Who signs this message's mail (None: signing is off, or the look-up failed, which the
    message page then says: sent unsigned). Asked before rendering, so the render job signs."""
    if not settings.DKIM_SIGNING:
        return None
    try:
        # The features leave From as it is: the queued message's From is the rendered one's.
        # The owner comes with the claim batch: a cached plan costs no query (it was one per
        # message, 15 % of a submission + delivery process's samples, bench/README.md).
        key = (message.owner_id, message.is_dsn, from_domain(message.raw))
        return cached_plan(*key) or await worker._db(plan_for, *key)
    except Exception as exc:  # noqa: BLE001 - sent unsigned, and the message page says so
        await _unsigned(worker, message, exc)
        return None


async def sign_rendered(worker, message, rendered, plan: Plan | None):
    """rendered (delivery.Rendered) with every distinct body signed by plan's signers; the
    render job has usually signed already (rendered.signed), else a pool job of its own signs
    (mail sent unchanged: no features, or a failed render). Unsigned on failure."""
    if plan is None or not rendered.by_recipient:
        return rendered
    if rendered.signed:
        if rendered.sign_error:
            await _unsigned(worker, message, rendered.sign_error)
        elif plan.warning:
            await worker._warn(message, plan.warning,
                               {"action": "signed with the relay's domain"})
        return rendered
    bodies = {id(data): data for data, _ in rendered.by_recipient.values()}
    order = list(bodies)
    try:
        done = await worker.signer.sign([bodies[i] for i in order], plan.signers)
    except Exception as exc:  # noqa: BLE001 - sent unsigned, and the message page says so
        await _unsigned(worker, message, exc)
        return rendered
    if plan.warning:
        await worker._warn(message, plan.warning, {"action": "signed with the relay's domain"})
    signed = dict(zip(order, done, strict=True))
    return type(rendered)({rid: (signed[id(data)], sender)
                           for rid, (data, sender) in rendered.by_recipient.items()},
                          signed=True)


class SignFailed(Exception):
    """One of a message's bodies could not be signed (the reason is the message)."""


class SignBatcher:
    """Signs the unrendered mail of the messages that reach signing together (a claim batch's
    plain messages all do, in one turn of the loop) in as few pool jobs as there are render
    processes, instead of a job per message: each job is a round trip through runsmtp's loop
    (pickling, a pipe, a future), 0.3 ms or so per message with a job each (bench/README.md)."""

    def __init__(self, pool: RenderPool, most: int = 25):
        self.pool = pool
        self.most = most  # bodies per job (a job's time counts against RENDER_TIMEOUT)
        self._waiting: list[tuple[list[bytes], tuple[Signer, ...], asyncio.Future]] = []
        self._tasks: set[asyncio.Task] = set()

    async def sign(self, bodies: list[bytes], signers: tuple[Signer, ...]) -> list[bytes]:
        """bodies signed by signers; SignFailed or RenderFailed when they could not be."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append((bodies, signers, future))
        if len(self._waiting) == 1:
            # After every task made ready in this turn has had its go (and added its bodies).
            loop.call_soon(self._start)
        return await future

    def _start(self) -> None:
        waiting, self._waiting = self._waiting, []
        task = asyncio.get_running_loop().create_task(self._flush(waiting))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, waiting: list) -> None:
        try:
            await self._sign(waiting)
        except BaseException as exc:  # a bug here must not leave its messages waiting
            for _, _, future in waiting:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception)
                                         else RenderFailed("signing cancelled"))
            if not isinstance(exc, Exception):
                raise

    async def _sign(self, waiting: list) -> None:
        # Whole requests per job, jobs of about `most` bodies: each job's messages go on to
        # be sent as soon as it is back (one job for the whole batch would hold every send
        # until the last signature: 338 msg/s where one job per message made 546).
        chunks: list[list] = [[]]
        size = 0
        for request in waiting:
            if size >= self.most:
                chunks.append([])
                size = 0
            chunks[-1].append(request)
            size += len(request[0])
        await asyncio.gather(*(self._job(chunk) for chunk in chunks))

    async def _job(self, requests: list) -> None:
        sets: dict[int, int] = {}  # id(signers) -> index: a cached plan's tuple is shared
        signer_sets: list[tuple[Signer, ...]] = []
        bodies: list[bytes] = []
        which: list[int] = []
        for request_bodies, signers, _ in requests:
            s = sets.get(id(signers))
            if s is None:
                s = sets[id(signers)] = len(signer_sets)
                signer_sets.append(signers)
            bodies.extend(request_bodies)
            which.extend([s] * len(request_bodies))
        try:
            done = await self.pool.run(sign_job, bodies, signer_sets, which)
        except Exception as exc:  # noqa: BLE001 - each of its messages goes out unsigned
            for _, _, future in requests:
                if not future.done():
                    future.set_exception(exc)
            return
        n = 0
        for request_bodies, _, future in requests:
            got, n = done[n:n + len(request_bodies)], n + len(request_bodies)
            if future.done():  # its task was cancelled
                continue
            why = next((g for g in got if isinstance(g, str)), None)
            if why is None:
                future.set_result(got)
            else:
                future.set_exception(SignFailed(why))


async def _unsigned(worker, message, exc: Exception | str) -> None:
    if isinstance(exc, str | RenderFailed | SignFailed):
        reason = str(exc)
    else:
        reason = f"{type(exc).__name__}: {exc}"
    log.warning("message %s: DKIM signing failed (%s); sent unsigned", message.queue_id, reason)
    await worker._warn(message, f"DKIM signing failed ({reason})", {"action": "sent unsigned"})


# -- SENDER_UNVERIFIED=refuse: the check at the end of DATA --------------------------------------

# Only "verified" is cached: a domain verified a moment ago is taken at once, and refused
# mail costs a query each time.
_verified: OrderedDict[tuple[int | None, str], float] = OrderedDict()


def _is_verified(owner_id: int | None, domain: str) -> bool:
    key = (owner_id, domain)
    if _verified.get(key, 0.0) > time.monotonic():
        return True
    from smtpeter_site.db import with_live_connection

    found = with_live_connection(senders.is_verified, owner_id, domain)
    if found:
        _remember(_verified, key, time.monotonic() + SIGNER_CACHE_SECONDS)
    return found


async def refusal(owner_id: int | None, raw: bytes) -> str | None:
    """The 550 5.7.1 reply for a message whose From domain (or a parent) is not a verified
    sender domain of its owner, naming the domain to verify; None to take it. At DATA, not
    MAIL FROM: DMARC aligns with the From header, which MAIL FROM does not show."""
    domain = from_domain(raw)
    if not domain:
        return "550 5.7.1 No From address: a From address at a verified sender domain is needed"
    try:
        if await asyncio.to_thread(_is_verified, owner_id, domain):
            return None
    except Exception as exc:  # noqa: BLE001 - the client tries again later
        log.error("checking sender domain %s failed (%s: %s)", domain, type(exc).__name__, exc)
        return "451 4.3.0 Could not check the sender domain, try again later"
    return (f"550 5.7.1 From domain {domain} is not a verified sender domain of this account: "
            f"add and verify {domain} (or a parent domain) under Sender domains")
