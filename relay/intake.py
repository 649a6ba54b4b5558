"""The intake: mail that came in on the mx role (bounces, complaints, auto-replies) read and
turned into events, recipient states and suppression entries.

Plain functions, like a policy tested without sockets: `references` and `decide` are pure,
`process_one` reads one stored intake message and writes everything it causes in one
transaction, together with the mark that it was read (so a crash and a re-run record nothing
twice); `process_batch` does the same for several in one transaction, one savepoint each.
`IntakeWorker` is the runsmtp role that calls it off the event loop.

What becomes what (docs/smtp.md, "Intake"):
- bounce linked to a sent recipient: a `bounce` event; a delivered recipient becomes bounced;
  hard adds the address to the owner's suppression list, soft counts towards it.
- complaint (ARF, JMRP, SES) linked to a sent message: a `complaint` event; the address is
  suppressed when the recipient is known.
- auto-reply linked to a sent recipient: a `response` event with its subject.
- a delivery notice, a "delayed" notice, something unreadable, or anything that names no
  message of ours: no event, a log line, and the outcome on the intake message (staff see it
  in the intake list of the Messages page).
- a report that names a message of ours only through its queue id, without naming a
  recipient who received it: `untrusted`, treated like the line above (distrust()).
"""
from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import BinaryField
from django.db.models.functions import Substr
from django.utils import timezone

from events.services import record
from features.tokens import parse_verp
from smtpeter_site.db import with_live_connection
from smtpeter_site.keys import key_for

from . import metrics, suppression
from .models import Message, Recipient
from .reports import MAX_BYTES, Report, ReportRecipient, parse_report

log = logging.getLogger("relay.intake")

BATCH = 50  # intake messages read per claim
MAX_REFS = 20  # queue ids taken from one report's headers
# Our Received header ("by host (smtpeter) with ESMTPSA id <queue id>") in a returned message.
_OUR_RECEIVED = re.compile(rb"\(smtpeter\)\s+with\s+[A-Z]+\s+id\s+([0-9A-F]{17})\b")
_QUEUE_ID = re.compile(r"<?([0-9A-F]{17})@[^>]*>?")

Outcome = str  # bounce, complaint, response, delayed, delivery, unknown, unlinked, error


@dataclass
class Refs:
    """What in an intake message can name a message of ours, best first."""

    verp: list[tuple[int, int, str]] = field(default_factory=list)  # message, recipient, via
    queue_ids: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)  # the reported recipients, lower-cased
    sender: str = ""  # From: of the intake message (an auto-reply's author)


@dataclass
class Link:
    message: Message
    recipient: Recipient | None
    via: str  # verp, return-path, arf-mail-from, queue-id


@dataclass
class Decision:
    outcome: Outcome
    event_type: str = ""  # "" records no event
    data: dict = field(default_factory=dict)
    bounce_class: str = ""  # hard or soft: suppression.record_bounce
    complaint: bool = False  # suppression.record_complaint
    bounced: bool = False  # a delivered recipient becomes bounced
    detail: str = ""  # the words for the suppression entry and the log line


def references(raw: bytes, report: Report, intake_addresses: list[str], own_queue_id: str,
               key: bytes, bounce_domain: str) -> Refs:
    """Every VERP address (the intake's own recipients first, then the reported message's
    Return-Path and ARF Original-Mail-From) and every queue id of ours (our Received header
    in the returned message, a Message-ID made of a queue id) found in ``raw``/``report``."""
    refs = Refs()
    arf_from = report.arf.original_mail_from if report.arf else ""
    candidates = [(a, "verp") for a in intake_addresses] + [
        (report.original.return_path, "return-path"), (arf_from, "arf-mail-from")]
    for address, via in candidates:
        found = parse_verp(key, (address or "").strip().strip("<>"), bounce_domain)
        if found is not None:
            refs.verp.append((found[0], found[1], via))
    for m in _OUR_RECEIVED.finditer(raw[:MAX_BYTES]):
        qid = m.group(1).decode("ascii")
        if qid != own_queue_id and qid not in refs.queue_ids:
            refs.queue_ids.append(qid)
    m = _QUEUE_ID.fullmatch(report.original.message_id.strip())
    if m and m.group(1) != own_queue_id and m.group(1) not in refs.queue_ids:
        refs.queue_ids.append(m.group(1))
    refs.queue_ids = refs.queue_ids[:MAX_REFS]
    named = [report.arf.original_rcpt_to if report.arf else ""]
    named += [r.original_recipient for r in report.recipients]
    named += [r.address for r in report.recipients]
    named += [a for _, a in getaddresses([report.original.to])]
    for a in named:
        a = (a or "").strip().strip("<>").lower()
        if "@" in a and a not in refs.addresses:
            refs.addresses.append(a)
    try:
        head = BytesHeaderParser(policy=compat32).parsebytes(raw[:64 * 1024])
        refs.sender = next((a for _, a in getaddresses([str(head.get("From", ""))]) if a), "")
    except Exception:  # noqa: BLE001 - a From we cannot read is no sender
        refs.sender = ""
    refs.sender = refs.sender[:320]
    return refs


def _reported(report: Report, address: str) -> ReportRecipient | None:
    """The report's block about ``address``: by address, else the first failure, else any."""
    address = address.lower()
    for r in report.recipients:
        if address and address in (r.address.lower(), r.original_recipient.lower()):
            return r
    failed = [r for r in report.recipients if r.action == "failed"]
    return (failed or report.recipients or [None])[0]


def decide(report: Report, linked: bool, address: str, intake_queue_id: str,
           sender: str = "", via: str = "") -> Decision:
    """What one read intake message causes. ``linked``: it names a message of ours;
    ``address``: the recipient it names ("" when only the message is known)."""
    base = {"intake": intake_queue_id, "via": via}
    if report.type in ("delivery", "unknown") or not linked:
        outcome = report.type if linked or report.type in ("delivery", "unknown") else "unlinked"
        return Decision(outcome, detail=f"{report.type} ({report.source or 'no rule'})")
    if report.type == "bounce":
        r = _reported(report, address)
        if r is not None and r.action == "delayed":
            # The remote server is still trying: a warning, not an outcome.
            return Decision("delayed", detail=f"delayed {r.status} {r.diagnostic}".strip())
        data = {**base, "status": r.status if r else "", "class": r.class_ if r else "",
                "reason": r.reason if r else "", "diagnostic": r.diagnostic if r else "",
                "remote_mta": r.remote_mta if r else "", "action": r.action if r else "",
                "source": report.source}
        if r is not None and address and r.address.lower() != address.lower():
            data["reported_address"] = r.address
        words = " ".join(w for w in (data["status"], data["diagnostic"]) if w)
        return Decision("bounce", "bounce", data, bounce_class=data["class"] if address else "",
                        bounced=True, detail=words or "bounce")
    if report.type == "complaint":
        arf = report.arf
        data = {**base, "feedback_type": report.feedback_type or "abuse",
                "source_ip": arf.source_ip if arf else "",
                "user_agent": arf.user_agent if arf else "",
                "reported_domain": arf.reported_domain if arf else "",
                "arrival_date": arf.arrival_date if arf else "", "source": report.source}
        return Decision("complaint", "complaint", data, complaint=bool(address),
                        detail=f"complaint ({data['feedback_type']})")
    # auto-reply
    data = {**base, "subject": report.subject[:998], "from": sender}
    return Decision("response", "response", data, detail=f"auto-reply: {report.subject[:80]}")


def find_link(refs: Refs) -> Link | None:
    """The sent message (and recipient) the references name, or None."""
    for message_id, recipient_id, via in refs.verp:
        r = (Recipient.objects.select_related("message").defer("message__raw")
             .filter(pk=recipient_id, message_id=message_id,
                     message__kind=Message.Kind.SUBMISSION).first())
        if r is not None:
            return Link(r.message, r, via)
    for qid in refs.queue_ids:
        message = (Message.objects.defer("raw")
                   .filter(queue_id=qid, kind=Message.Kind.SUBMISSION).first())
        if message is None:
            continue
        named = (Recipient.objects.filter(message=message, address__in=refs.addresses)
                 .order_by("id").first()) if refs.addresses else None
        # Only a recipient the report names: a report that names a queue id and some other
        # address must not touch a recipient it does not name (see distrust()).
        return Link(message, named, "queue-id")
    return None


# A recipient that received the message: delivered, or delivered and then bounced.
RECEIVED = frozenset({Recipient.State.DELIVERED, Recipient.State.BOUNCED})


def distrust(link: Link) -> str:
    """Why ``link`` must not be acted upon, or "" when it may.

    Anyone can send mail to the feedback addresses, so a report counts only when it shows a
    knowledge that only a copy of our message gave: a signed VERP address (one per
    recipient, in the Return-Path of that recipient's copy alone; forged ones fail the
    signature), or our queue id / Message-ID together with the address of a recipient of
    that message who actually received it. A queue id alone is seen by every recipient of
    a message, so with an unnamed, other or not-delivered recipient the report is ignored.
    """
    if link.via != "queue-id":
        return ""
    if link.recipient is None:
        return "names our queue id but no recipient of that message"
    if link.recipient.state not in RECEIVED:
        return (f"names <{link.recipient.address}>, who has not received that message "
                f"({link.recipient.state})")
    return ""


def pending(limit: int = BATCH) -> list[int]:
    """Ids of intake messages not read yet, oldest first."""
    return list(Message.objects.filter(kind=Message.Kind.BOUNCE, intake_done_at__isnull=True)
                .order_by("id").values_list("id", flat=True)[:limit])


@dataclass
class Prepared:
    """One intake message read and parsed, before the transaction."""

    message_id: int
    queue_id: str
    report: Report
    refs: Refs


def prepare(message_ids: list[int]) -> list[Prepared]:
    """Read and parse the unread intake messages among ``message_ids`` (two queries), oldest
    first; the parse happens here, outside any transaction."""
    # Only what parse_report reads (its first MAX_BYTES): a batch of 50 messages of
    # SMTP_MX_MAX_SIZE each must not be held in memory whole.
    rows = list(Message.objects.filter(pk__in=message_ids, kind=Message.Kind.BOUNCE,
                                       intake_done_at__isnull=True)
                .order_by("id")
                .values_list("id", "queue_id",
                             Substr("raw", 1, MAX_BYTES, output_field=BinaryField())))
    addresses: dict[int, list[str]] = {}
    for message_id, address in (Recipient.objects.filter(message_id__in=[r[0] for r in rows])
                                .order_by("id").values_list("message_id", "address")):
        addresses.setdefault(message_id, []).append(address)
    key, domain = key_for("verp"), settings.BOUNCE_DOMAIN
    prepared = []
    for message_id, queue_id, raw in rows:
        raw = bytes(raw)
        report = parse_report(raw)
        refs = references(raw, report, addresses.get(message_id, []), queue_id, key, domain)
        prepared.append(Prepared(message_id, queue_id, report, refs))
    return prepared


def _apply(p: Prepared, now: datetime) -> tuple[Outcome, str]:
    """Inside the caller's transaction, with the message's row locked: link, decide, record
    the event, the suppression, the recipient's state and the read mark. The outcome and the
    log line to write after the commit."""
    link = find_link(p.refs)
    why_not = distrust(link) if link is not None else ""
    if why_not:
        # Recorded as read, linked to nothing: no event, no suppression, and its owner does
        # not see it (raw_message follows intake_for).
        Message.objects.filter(pk=p.message_id).update(
            intake_done_at=now, intake_outcome="untrusted", intake_for=None)
        return "untrusted", (f"{p.queue_id}: intake read as untrusted: {p.report.type} about "
                             f"{link.message.queue_id} ignored: it {why_not}")
    recipient = link.recipient if link else None
    decision = decide(p.report, link is not None, recipient.address if recipient else "",
                      p.queue_id, p.refs.sender, link.via if link else "")
    event = None
    if decision.event_type and link is not None:
        event = record(decision.event_type, link.message.pk,
                       recipient.pk if recipient else None, decision.data)
    owner_id = link.message.owner_id if link else None
    if recipient is not None and owner_id is not None:
        if decision.bounce_class in ("hard", "soft"):
            suppression.record_bounce(owner_id, recipient.address, decision.bounce_class,
                                      detail=decision.detail, event_id=event and event.pk,
                                      now=now)
        if decision.complaint:
            suppression.record_complaint(owner_id, recipient.address, detail=decision.detail,
                                         event_id=event and event.pk, now=now)
    if decision.bounced and recipient is not None:
        Recipient.objects.filter(pk=recipient.pk, state=Recipient.State.DELIVERED).update(
            state=Recipient.State.BOUNCED, updated=now)
    Message.objects.filter(pk=p.message_id).update(
        intake_done_at=now, intake_outcome=decision.outcome,
        intake_for=link.message if link else None)
    # Counted once it is committed: a savepoint rolled back drops the callback with it.
    counted = decision.event_type if event is not None else ""
    transaction.on_commit(lambda: metrics.intake_event(counted))
    target = (f"{link.message.queue_id} <{recipient.address if recipient else '-'}> "
              f"via {link.via}" if link else "no message of ours")
    return decision.outcome, (f"{p.queue_id}: intake read as {decision.outcome}: {target} "
                              f"({decision.detail[:200]})")


def _lock(message_ids: list[int]) -> set[int]:
    """Inside a transaction: the ids still unread that no other worker holds, locked (FOR
    UPDATE SKIP LOCKED on PostgreSQL: two workers' reads of one message are one)."""
    return set(Message.objects.select_for_update(skip_locked=True)
               .filter(pk__in=message_ids, intake_done_at__isnull=True)
               .values_list("id", flat=True))


def process_one(message_id: int, now: datetime | None = None) -> Outcome | None:
    """Read one intake message and record what it causes in one transaction; its outcome, or
    None when it is not (or no longer) an unread intake message, or another worker holds it.
    Any error propagates and leaves nothing recorded."""
    found = prepare([message_id])
    if not found:
        return None
    with transaction.atomic():
        if not _lock([message_id]):
            return None
        outcome, line = _apply(found[0], now or timezone.now())
    log.info("%s", line)
    return outcome


def process_batch(message_ids: list[int], now: datetime | None = None
                  ) -> dict[int, Outcome]:
    """Read several intake messages in ONE transaction (one commit, the intake's main cost),
    each inside a savepoint; the outcome of each one read.

    Crash-safe and idempotent like process_one: the read marks commit with the events, so a
    crash commits nothing and a re-run reads them all again. One poisonous message does not
    take the others down: an error that is not the database's rolls back its savepoint only
    and marks it `error`; a database error on one message (a deadlock, a value the database
    refuses) rolls back its savepoint and leaves it unread, to be read alone after the
    commit by process_safely (whose database errors propagate: the worker pauses). Should
    the connection itself be lost, everything propagates and nothing is committed.
    """
    now = now or timezone.now()
    outcomes: dict[int, Outcome] = {}
    lines: list[str] = []
    alone: list[int] = []
    try:
        prepared = prepare(message_ids)
    except DatabaseError:
        raise
    except Exception:  # noqa: BLE001 - one message's parse failed: read them one by one
        return {pk: o for pk in message_ids if (o := process_safely(pk)) is not None}
    with transaction.atomic():
        locked = _lock([p.message_id for p in prepared])
        for p in prepared:
            if p.message_id not in locked:
                continue
            try:
                with transaction.atomic():
                    outcomes[p.message_id], line = _apply(p, now)
                lines.append(line)
            except DatabaseError as exc:
                if connection.needs_rollback or not connection.is_usable():
                    raise
                log.warning("%s: intake left for a read of its own (%s: %s)", p.queue_id,
                            type(exc).__name__, exc)
                alone.append(p.message_id)
            except Exception as exc:  # noqa: BLE001 - one bad message must not stop the rest
                log.error("%s: intake message could not be read (%s: %s); marked as error",
                          p.queue_id, type(exc).__name__, exc)
                Message.objects.filter(pk=p.message_id).update(intake_done_at=now,
                                                               intake_outcome="error")
                outcomes[p.message_id] = "error"
    for line in lines:
        log.info("%s", line)
    for message_id in alone:
        if (outcome := process_safely(message_id)) is not None:
            outcomes[message_id] = outcome
    return outcomes


def process_safely(message_id: int) -> Outcome | None:
    """process_one; an error that is not the database's marks the message read as "error"
    (logged) so that one bad message is not tried forever. Database errors propagate: the
    worker pauses and tries again."""
    try:
        return process_one(message_id)
    except DatabaseError:
        raise
    except Exception as exc:  # noqa: BLE001 - one bad message must not stop the intake
        log.error("intake message %s could not be read (%s: %s); marked as error",
                  message_id, type(exc).__name__, exc)
        Message.objects.filter(pk=message_id, intake_done_at__isnull=True).update(
            intake_done_at=timezone.now(), intake_outcome="error")
        return "error"


class IntakeWorker:
    """The runsmtp role: reads new intake messages on one database thread, never on the loop.
    Woken when the queue writer commits; otherwise polls every DELIVERY_POLL_INTERVAL."""

    def __init__(self, poll: float | None = None, batch: int = BATCH):
        self.poll = poll or settings.DELIVERY_POLL_INTERVAL
        self.batch = batch
        self._pool = None
        self._wakeup = asyncio.Event()
        self._stopping = False
        self.processed = 0

    def wake(self) -> None:
        self._wakeup.set()

    async def _db(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, with_live_connection, fn, *args)

    async def run(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(1, thread_name_prefix="intake-db")
        failures = 0
        while not self._stopping:
            self._wakeup.clear()
            try:
                ids = await self._db(pending, self.batch)
                if ids:
                    self.processed += len(await self._db(process_batch, ids))
            except Exception as exc:  # noqa: BLE001 - the database comes back; we go on
                pause = min(self.poll, 2 ** min(failures, 5) * 0.25)
                failures += 1
                log.error("intake failed (%s: %s); next try in %g s", type(exc).__name__, exc,
                          pause)
                await asyncio.sleep(pause)
                continue
            failures = 0
            if len(ids) < self.batch:
                try:
                    await asyncio.wait_for(self._wakeup.wait(), self.poll)
                except TimeoutError:
                    pass

    async def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()
        if self._pool is not None:
            try:
                await self._db(connection.close)
            except Exception:  # noqa: BLE001, S110 - closing a dead connection
                pass
            self._pool.shutdown(wait=True)
