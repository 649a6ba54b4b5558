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
from senders.dkim import Signer, from_domain, sign_many

from .render_pool import RenderFailed

log = logging.getLogger("relay.signing")
SIGN_CHUNK = 50  # messages per pool job
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
        chunks = await asyncio.gather(*(
            worker.renderer.run(sign_many, [bodies[i] for i in order[n:n + SIGN_CHUNK]],
                                list(plan.signers))
            for n in range(0, len(order), SIGN_CHUNK)))
    except Exception as exc:  # noqa: BLE001 - sent unsigned, and the message page says so
        await _unsigned(worker, message, exc)
        return rendered
    if plan.warning:
        await worker._warn(message, plan.warning, {"action": "signed with the relay's domain"})
    signed = dict(zip(order, (m for chunk in chunks for m in chunk), strict=True))
    return type(rendered)({rid: (signed[id(data)], sender)
                           for rid, (data, sender) in rendered.by_recipient.items()},
                          signed=True)


async def _unsigned(worker, message, exc: Exception | str) -> None:
    if isinstance(exc, str | RenderFailed):
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
