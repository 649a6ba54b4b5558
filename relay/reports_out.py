"""DSNs out: which recorded outcomes earn the sender a report, and queuing each report as a
message of its own, inside the transaction that records the outcomes.

relay.queue.record_results() hands over the outcomes whose RCPT NOTIFY asks for a report;
``queue_reports()`` writes the reports in the caller's transaction, so a crash loses none and
repeats none (the recipient's dsn_sent / dsn_delayed_sent flag is set in that transaction).
The decisions:

- A report is an ordinary outbound message (kind ``submission``, told apart by ``dsn_of``):
  from the null sender, one recipient (the original envelope sender), no features (never
  tracked or rewritten, no VERP), owned by the original's owner and login, so the customer
  sees it beside the message it reports on. The claim picks it up like any other mail.
- None for a message from the null sender (no loops), to an address at BOUNCE_DOMAIN, or
  when the message's feature set has bouncetracking on (the failure event and the dashboard
  tell instead).
- Recipients of one message with the same action in one batch of outcomes share a report.
- "delivered" when the next hop took NOTIFY (it now owns the reports) or in capture mode
  (nothing is relayed); "relayed" when the next hop did not take DSN.
- "delayed" is checked when a deferral is recorded: once the recipient was first deferred
  DSN_DELAY_AFTER ago, one report (Will-Retry-Until: the message's deadline).
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from events.models import Event
from events.services import NewEvent, record_many

from .dsn import DsnRecipient, build_dsn
from .headers import subject_of
from .models import Message, Recipient
from .queue_writer import announce_new_mail

log = logging.getLogger("relay.dsn")


@dataclass(frozen=True)
class Outcome:
    """One recipient's outcome that NOTIFY asks to be told of (action: relay.dsn.ACTIONS)."""

    recipient_id: int
    message_id: int
    action: str
    status: str  # RFC 3463 code, "5.1.1"
    diagnostic: str = ""  # the reply as one line: "550 5.1.1 No such user"
    remote_mta: str = ""
    last_attempt: datetime | None = None
    will_retry_until: datetime | None = None


def no_report_to(mail_from: str, features: dict) -> str:
    """Why a message's sender gets no report ("" when it gets one)."""
    if not mail_from:
        return "null sender"
    if features.get("bouncetracking"):
        return "bouncetracking"
    domain = mail_from.rpartition("@")[2].lower().rstrip(".")
    bounce = settings.BOUNCE_DOMAIN.lower().rstrip(".")
    if domain == bounce or domain.endswith("." + bounce):
        return "BOUNCE_DOMAIN"
    return ""


def queue_reports(outcomes: list[Outcome], now: datetime) -> list[int]:
    """Queue the reports these outcomes earn, in the caller's transaction; their message ids.

    Each outcome's recipient is marked (dsn_sent, or dsn_delayed_sent for "delayed") and an
    Event ``dsn`` is recorded on the original message per report.
    """
    if not outcomes:
        return []
    messages = {
        m["id"]: m for m in Message.objects.filter(
            pk__in={o.message_id for o in outcomes}).values(
            "id", "queue_id", "mail_from", "features", "ret", "envid", "received_at", "raw",
            "login_id", "owner_id")
    }
    recipients = {rid: (address, orcpt) for rid, address, orcpt in Recipient.objects.filter(
        pk__in=[o.recipient_id for o in outcomes]).values_list("id", "address", "orcpt")}
    groups: dict[tuple[int, str], list[Outcome]] = defaultdict(list)
    for o in outcomes:
        m = messages.get(o.message_id)
        if m is None or o.recipient_id not in recipients:
            continue
        why = no_report_to(m["mail_from"], m["features"] or {})
        if why:
            log.info("message %s: no %s DSN (%s)", m["queue_id"], o.action, why)
            continue
        groups[(o.message_id, o.action)].append(o)
    ids, events = [], []
    for (message_id, action), group in groups.items():
        m = messages[message_id]
        try:
            raw = build_dsn(
                reporting_mta=settings.SMTP_HOSTNAME, original_sender=m["mail_from"],
                recipients=[DsnRecipient(
                    final_recipient=recipients[o.recipient_id][0], action=o.action,
                    status=o.status, original_recipient=recipients[o.recipient_id][1],
                    remote_mta=o.remote_mta, diagnostic=o.diagnostic,
                    last_attempt=o.last_attempt, will_retry_until=o.will_retry_until)
                    for o in group],
                original=bytes(m["raw"]), arrival_date=m["received_at"], ret=m["ret"],
                envid=m["envid"], now=now)
        except Exception as exc:  # noqa: BLE001 - the outcomes must be written all the same
            # Raising would roll the outcomes back and send the mail again at the lease's end.
            log.exception("message %s: building the %s DSN failed", m["queue_id"], action)
            events.append(NewEvent(Event.Type.WARNING, message_id, None, {
                "reason": f"{action} DSN not sent: {type(exc).__name__}: {exc}"[:500]}))
            continue
        report = Message.objects.create(
            kind=Message.Kind.SUBMISSION, login_id=m["login_id"], owner_id=m["owner_id"],
            mail_from="", features={}, tags=[], size=len(raw), raw=raw,
            subject=subject_of(raw), dsn_of_id=message_id)
        Recipient.objects.create(message=report, address=m["mail_from"],
                                 state=Recipient.State.QUEUED, next_attempt_at=now)
        flag = "dsn_delayed_sent" if action == "delayed" else "dsn_sent"
        rids = [o.recipient_id for o in group]
        Recipient.objects.filter(pk__in=rids).update(**{flag: True})
        addresses = [recipients[rid][0] for rid in rids]
        events.append(NewEvent(Event.Type.DSN, message_id, None, {
            "action": action, "queue_id": report.queue_id, "to": m["mail_from"],
            "recipients": addresses}))
        log.info("message %s: %s DSN %s queued to <%s> for %d recipient(s)", m["queue_id"],
                 action, report.queue_id, m["mail_from"], len(group))
        ids.append(report.pk)
    record_many(events)
    if ids:
        announce_new_mail()
    return ids

