"""The delivery queue: claim due recipients with a lease, record what each attempt came to
(Attempt rows, events, the retry schedule), and the staff actions on it, each audited.

Claims: on PostgreSQL `SELECT … FOR UPDATE SKIP LOCKED` in a short transaction that sets the
lease, so several processes never claim one recipient at once; on SQLite the transaction takes
the write lock at BEGIN (IMMEDIATE), which serialises claimers as well. The network work
happens outside any transaction. An outcome is written only by the worker that still holds
the lease; an expired lease (a crashed process) makes the recipient claimable again.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BinaryField, Case, Exists, F, OuterRef, Value, When
from django.utils import timezone

from events.models import Event
from events.services import NewEvent, record_many
from smtpeter_site.db import insert_sql, per_vendor, select_sql

from .classify import classify
from .dsn import dsn_wanted
from .models import Attempt, Capture, Message, QueueAudit, Recipient, TrackedLink
from .queue_writer import announce_new_mail
from .reports_out import Outcome, queue_reports

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser as User

log = logging.getLogger("relay.queue")
State = Recipient.State
PENDING = (State.QUEUED, State.DEFERRED)
EXPIRED_ENHANCED = "5.4.7"


@dataclass(frozen=True)
class Claim:
    """One leased recipient, with what delivery needs to know of it."""

    recipient_id: int
    message_id: int
    address: str
    notify: str
    orcpt: str
    attempts: int


@dataclass(frozen=True)
class QueuedMessage:
    """The parts of a Message that delivery reads (raw only when asked for)."""

    id: int
    queue_id: str
    kind: str
    mail_from: str
    ret: str
    envid: str
    features: dict
    received_at: datetime
    max_deliver_until: datetime | None
    raw: bytes | None  # None: not read yet (a big message in a batch, see load_messages)
    links_stored: bool = False  # its TrackedLink rows are written (see store_links)
    owner_id: int | None = None
    is_dsn: bool = False  # a report we generated (never suppressed)


@dataclass
class Result:
    """What one attempt came to for one recipient; outcome is an Attempt.Outcome value.

    attempted=False: decided without talking to anyone (suppressed, say): no Attempt row.
    capture: capture mode's final bytes, stored with the outcome in one transaction.
    dsn_passed: the next hop took the DSN parameters; without it a NOTIFY=SUCCESS recipient's
    report says "relayed" (capture mode relays nothing: "delivered").
    """

    recipient_id: int
    outcome: str
    code: int | None = None
    enhanced: str = ""
    text: str = ""
    host: str = ""
    ip: str | None = None
    port: int | None = None
    tls_version: str = ""
    tls_cipher: str = ""
    duration_ms: int = 0
    mail_from: str = ""  # the envelope sender as sent
    capture: bytes | None = None
    attempted: bool = True
    dsn_passed: bool = False  # the next hop took NOTIFY/ORCPT: it reports SUCCESS, not us
    tls_note: str = ""  # why the attempt went without TLS where STARTTLS was tried

    @property
    def reply(self) -> str:
        """The reply as one line: "451 4.7.1 text"."""
        return " ".join(str(p) for p in (self.code, self.enhanced, self.text) if p)


# -- schedule ------------------------------------------------------------------------------


def retry_delay(attempts: int, first: float | None = None, most: float | None = None) -> timedelta:
    """Wait after the ``attempts``-th failed attempt: first, doubling, never more than most."""
    first = settings.DELIVERY_RETRY_FIRST if first is None else first
    most = settings.DELIVERY_RETRY_MAX if most is None else most
    exponent = min(max(attempts, 1) - 1, 60)  # 2**60 seconds is past any sane maximum
    return timedelta(seconds=min(first * 2 ** exponent, most))


def deadline(received_at: datetime, max_deliver_until: datetime | None = None,
             lifetime: float | None = None) -> datetime:
    """When a message's recipients stop being retried: DELIVERY_MAX_LIFETIME after arrival,
    or the message's own X-SMTPeter-MaxDeliverTime if that is sooner."""
    lifetime = settings.DELIVERY_MAX_LIFETIME if lifetime is None else lifetime
    end = received_at + timedelta(seconds=lifetime)
    return min(end, max_deliver_until) if max_deliver_until else end


def next_attempt(attempts: int, now: datetime, end: datetime) -> datetime | None:
    """When to try again after the ``attempts``-th failure, or None: expired, fail now.

    The last retry happens at the deadline itself; a deferral at or past it is final.
    """
    if now >= end:
        return None
    return min(now + retry_delay(attempts), end)


# -- claims --------------------------------------------------------------------------------


_DUE_FIELDS = ["id", "message", "address", "notify", "orcpt", "attempts"]


@per_vendor
def _due_sql(conn) -> str:
    # Raw SQL built once per vendor: the claim runs after every wake-up, and compiling the
    # ORM query each time was most of its Python time (bench/README.md, e2e profile).
    qn = conn.ops.quote_name
    column = {name: qn(Recipient._meta.get_field(name).column)
              for name in ("next_attempt_at", "lease_until", "id")}
    return (select_sql(conn, Recipient, _DUE_FIELDS, "state")
            + f" = %s AND {column['next_attempt_at']} <= %s"
            + f" AND ({column['lease_until']} IS NULL OR {column['lease_until']} < %s)"
            + "{exclude}"
            + f" ORDER BY {column['next_attempt_at']} LIMIT %s"
            + (" FOR UPDATE SKIP LOCKED"
               if conn.features.has_select_for_update_skip_locked else ""))


def _due(state: str, now: datetime, limit: int, exclude: list[int] = ()) -> list[tuple]:
    if limit <= 0:
        return []
    # Every pending recipient has a next_attempt_at (the queue writer, defer, release and
    # retry set one): a range and an order the index rcpt_due answers, where "or null" or a
    # second sort key made PostgreSQL sort every pending row for each claim.
    at = connection.ops.adapt_datetimefield_value(now)
    not_in = ""
    if exclude:
        not_in = (f" AND NOT ({connection.ops.quote_name(Recipient._meta.pk.column)} IN "
                  f"({', '.join(['%s'] * len(exclude))}))")
    with connection.cursor() as cursor:
        cursor.execute(_due_sql(connection).replace("{exclude}", not_in),
                       [str(state), at, at, *exclude, limit])
        return cursor.fetchall()


def claim(worker_id: str, limit: int, now: datetime | None = None,
          lease: float | None = None) -> list[Claim]:
    """Lease up to ``limit`` due recipients to ``worker_id`` (not held, not intake).

    Retries may take at most half of a claim while fresh mail waits, fresh mail the rest:
    neither a backlog of retries nor a flood of new mail starves the other.
    """
    now = now or timezone.now()
    until = now + timedelta(seconds=settings.DELIVERY_LEASE if lease is None else lease)
    with transaction.atomic():
        retries = _due(State.DEFERRED, now, limit // 2)
        fresh = _due(State.QUEUED, now, limit - len(retries))
        if len(retries) + len(fresh) < limit and len(retries) == limit // 2:
            retries += _due(State.DEFERRED, now, limit - len(retries) - len(fresh),
                            [r[0] for r in retries])
        rows = fresh + retries
        if rows:
            Recipient.objects.filter(pk__in=[r[0] for r in rows]).update(
                lease_until=until, leased_by=worker_id)
    return [Claim(*row) for row in rows]


def renew(worker_id: str, recipient_ids: list[int], now: datetime | None = None,
          lease: float | None = None) -> int:
    """Extend the leases ``worker_id`` still holds on these recipients (work in progress)."""
    now = now or timezone.now()
    until = now + timedelta(seconds=settings.DELIVERY_LEASE if lease is None else lease)
    return Recipient.objects.filter(pk__in=recipient_ids, leased_by=worker_id).update(
        lease_until=until)


def unclaim(worker_id: str, recipient_ids: list[int]) -> int:
    """Give leases back unworked (a stopping worker): claimable again at once."""
    return Recipient.objects.filter(pk__in=recipient_ids, leased_by=worker_id).update(
        lease_until=None, leased_by="")


BATCH_RAW_MAX = 64 * 1024  # messages up to this size are read with their claim batch
_MESSAGE_FIELDS = ("id", "queue_id", "kind", "mail_from", "ret", "envid", "features",
                   "received_at", "max_deliver_until")


def _messages(message_ids: list[int], raw_max: int | None) -> list[QueuedMessage]:
    links_stored = Exists(TrackedLink.objects.filter(
        message=OuterRef("pk"), kind=TrackedLink.Kind.OPEN, position=0))
    raw = F("raw") if raw_max is None else Case(
        When(size__lte=raw_max, then=F("raw")), default=Value(None),
        output_field=BinaryField())
    rows = (Message.objects.filter(pk__in=message_ids)
            .annotate(links_stored=links_stored, raw_or_none=raw)
            .values_list(*_MESSAGE_FIELDS, "raw_or_none", "links_stored", "owner_id",
                         "dsn_of_id"))
    return [QueuedMessage(*row[:9], raw=None if row[9] is None else bytes(row[9]),
                          links_stored=bool(row[10]), owner_id=row[11],
                          is_dsn=row[12] is not None)
            for row in rows]


def load_message(message_id: int) -> QueuedMessage | None:
    """One message with its raw bytes; None when it is gone (deleted by staff)."""
    found = _messages([message_id], None)
    return found[0] if found else None


def load_messages(message_ids: list[int],
                  raw_max: int = BATCH_RAW_MAX) -> dict[int, QueuedMessage]:
    """The messages of a claim batch in one query, raw bytes only of those up to raw_max
    bytes (a batch of big messages would hold them all in memory at once; delivery reads
    those one at a time with load_message). A deleted message is missing from the result."""
    return {m.id: m for m in _messages(message_ids, raw_max)}


def store_links(message_id: int, links: list[str], images: list[str]) -> None:
    """Write a message's click and open URL lists (index = position in the list; images[0] is
    the pixel, ""), once: rows already there stay as they are.

    Delivery calls this when it first prepares the message; the tracking endpoints read them
    with relay.services.tracked_url().
    """
    if not images or images[0] != "":  # the pixel row says the lists are stored
        raise ValueError("images[0] must be the pixel, \"\"")
    rows = [(message_id, TrackedLink.Kind.CLICK, i, url) for i, url in enumerate(links)]
    rows += [(message_id, TrackedLink.Kind.OPEN, i, url) for i, url in enumerate(images)]
    sql = insert_sql(connection, TrackedLink, ["message", "kind", "position", "url"])
    with transaction.atomic(), connection.cursor() as cursor:
        # Both databases take ON CONFLICT: a second delivery process that prepared the same
        # message at the same time writes nothing.
        cursor.executemany(sql + " ON CONFLICT DO NOTHING", rows)


# -- outcomes ------------------------------------------------------------------------------


def deliver_ok(worker_id: str, results: list[Result], now: datetime | None = None) -> int:
    return record_results(worker_id, [_as(r, Attempt.Outcome.DELIVERED) for r in results], now)


def defer(worker_id: str, results: list[Result], now: datetime | None = None) -> int:
    return record_results(worker_id, [_as(r, Attempt.Outcome.DEFERRED) for r in results], now)


def fail(worker_id: str, results: list[Result], now: datetime | None = None) -> int:
    return record_results(worker_id, [_as(r, Attempt.Outcome.FAILED) for r in results], now)


def _as(result: Result, outcome: str) -> Result:
    result.outcome = outcome
    return result


def _event_data(r: Result) -> dict:
    data = {"code": r.code, "enhanced": r.enhanced, "text": r.text, "host": r.host}
    if r.capture is not None:
        data["captured"] = True
    if r.tls_note:
        data["tls_note"] = r.tls_note
    return data


def _report(r: Result, message_id: int, action: str, now: datetime, status: str = "",
            diagnostic: str = "", until: datetime | None = None) -> Outcome:
    return Outcome(
        r.recipient_id, message_id, action, status or r.enhanced, diagnostic or r.reply,
        remote_mta=r.host if r.capture is None else "",
        last_attempt=now if r.attempted else None, will_retry_until=until)


def record_results(worker_id: str, results: list[Result], now: datetime | None = None, *,
                   on_dsn: Callable[[list[int]], None] | None = None,
                   events: Sequence[NewEvent] = ()) -> int:
    """Store a batch of outcomes in one transaction; returns how many were stored.

    Rows whose lease ``worker_id`` no longer holds (expired and claimed by another, or
    deleted by staff) are left alone: the holder of the lease writes their outcome.
    A deferral past the message's deadline becomes a failure (5.4.7, with the last reply).
    Events: delivery, failure, and deferral only when a recipient is first deferred.
    The DSNs these outcomes earn (relay.reports_out) are queued in the same transaction;
    on_dsn(their message ids) is called after the commit, when there are any.
    ``events`` (delivery's warnings) are recorded in the same transaction, those of messages
    deleted meanwhile left out.
    """
    if not results and not events:
        return 0
    by_id = {r.recipient_id: r for r in results}
    with transaction.atomic():
        if events:
            # First, so their time precedes the attempts' (they were raised before them): a
            # message page's timeline reads warning, attempt, delivery.
            alive = set(Message.objects.filter(pk__in={e.message_id for e in events})
                        .values_list("pk", flat=True))
            record_many([e for e in events if e.message_id in alive])
        now = now or timezone.now()
        rows = list(
            Recipient.objects.select_for_update()
            .filter(pk__in=list(by_id), leased_by=worker_id)
            .values_list("id", "message_id", "state", "attempts", "first_deferred_at",
                         "message__received_at", "message__max_deliver_until", "notify",
                         "dsn_sent", "dsn_delayed_sent", "address", "message__owner_id",
                         "message__dsn_of_id")
        )
        if len(rows) < len(by_id):
            mine = {row[0] for row in rows}
            log.warning("%d outcome(s) dropped: lease lost or recipient deleted (ids %s)",
                        len(by_id) - len(rows), sorted(set(by_id) - mine)[:20])
        attempts, captures, events, reports = [], [], [], []
        hard: list[tuple[int, int, str, str]] = []  # (event index, owner, address, detail)
        delivered: dict[tuple, list[int]] = defaultdict(list)
        delay_after = timedelta(seconds=settings.DSN_DELAY_AFTER)
        for (rid, message_id, state, tries, first_deferred, received, until, notify, dsn_sent,
             delayed_sent, address, owner_id, dsn_of) in rows:
            r = by_id[rid]
            if r.attempted:
                attempts.append(Attempt(
                    recipient_id=rid, time=now, host=r.host[:255], ip=r.ip or None, port=r.port,
                    tls_version=r.tls_version[:16], tls_cipher=r.tls_cipher[:64], code=r.code,
                    enhanced=r.enhanced[:16], text=r.text, duration_ms=max(r.duration_ms, 0),
                    outcome=r.outcome))
            tries += 1 if r.attempted else 0
            if r.outcome == Attempt.Outcome.DELIVERED:
                delivered[(r.code, r.enhanced, r.text, r.capture is not None)].append(rid)
                if r.capture is not None:
                    captures.append(Capture(recipient_id=rid, message_id=message_id, time=now,
                                            mail_from=r.mail_from, data=r.capture))
                events.append(NewEvent(Event.Type.DELIVERY, message_id, rid, _event_data(r)))
                # RFC 3461 5.2.1: a next hop that took NOTIFY and ORCPT reports success
                # itself; we report only where the trail ends with us: "delivered" for a
                # capture, "relayed" to a hop without the DSN extension.
                action = ("delivered" if r.capture is not None
                          else None if r.dsn_passed else "relayed")
                if action and not dsn_sent and dsn_wanted(notify, action):
                    reports.append(_report(r, message_id, action, now, r.enhanced or "2.0.0"))
                continue
            fields = {"attempts": tries, "last_code": r.code, "last_enhanced": r.enhanced[:16],
                      "last_response": r.reply, "lease_until": None, "leased_by": ""}
            when = None
            if r.outcome == Attempt.Outcome.DEFERRED:
                when = next_attempt(tries, now, deadline(received, until))
            if when is not None:
                fields.update(next_attempt_at=when,
                              first_deferred_at=first_deferred or now)
                if state != State.HELD:
                    fields["state"] = State.DEFERRED
                if first_deferred is None:
                    events.append(NewEvent(Event.Type.DEFERRAL, message_id, rid,
                                           {**_event_data(r), "next_attempt_at": when.isoformat()}))
                elif (not delayed_sent and first_deferred <= now - delay_after
                      and dsn_wanted(notify, "delayed")):
                    reports.append(_report(r, message_id, "delayed", now,
                                           until=deadline(received, until)))
            else:
                data = _event_data(r)
                if r.outcome == Attempt.Outcome.DEFERRED:  # out of time
                    data.update(expired=True, enhanced=EXPIRED_ENHANCED,
                                text=f"Delivery time expired; last reply: {r.reply}")
                    fields.update(last_enhanced=EXPIRED_ENHANCED,
                                  last_response=f"{EXPIRED_ENHANCED} Delivery time expired; "
                                                f"last reply: {r.reply}")
                fields.update(state=State.FAILED, next_attempt_at=None)
                # The same classification as bounces that come back (relay.classify); a hard
                # failure the next hop gave us is a hard bounce for the suppression list.
                data["class"], data["reason"] = classify(r.code, data["enhanced"], data["text"])
                if (data["class"] == "hard" and r.attempted and owner_id is not None
                        and dsn_of is None):
                    hard.append((len(events), owner_id, address, r.reply))
                events.append(NewEvent(Event.Type.FAILURE, message_id, rid, data))
                if not dsn_sent and dsn_wanted(notify, "failed"):
                    expired = r.outcome == Attempt.Outcome.DEFERRED
                    reports.append(_report(r, message_id, "failed", now,
                                           EXPIRED_ENHANCED if expired else r.enhanced))
            Recipient.objects.filter(pk=rid).update(updated=now, **fields)
        for (code, enhanced, text, captured), ids in delivered.items():
            reply = Result(0, "", code, enhanced, text).reply
            Recipient.objects.filter(pk__in=ids).update(
                state=State.DELIVERED, attempts=F("attempts") + 1, last_code=code,
                last_enhanced=enhanced[:16], last_response=reply, captured=captured,
                next_attempt_at=None, lease_until=None, leased_by="", updated=now)
        Attempt.objects.bulk_create(attempts)
        Capture.objects.bulk_create(captures)
        created = record_many(events)
        if hard:
            from .suppression import record_bounce  # it audits through this module's peers

            for index, owner_id, address, detail in hard:
                try:
                    record_bounce(owner_id, address, "hard", detail=detail[:500],
                                  event_id=created[index].pk, now=now)
                except ValueError:  # an address the list cannot hold: the failure still stands
                    log.warning("not suppressed (bad address): %r", address[:100])
        dsn_ids = queue_reports(reports, now)
        if dsn_ids and on_dsn is not None:
            transaction.on_commit(lambda: on_dsn(dsn_ids), robust=True)
    return len(rows)


# -- staff actions -------------------------------------------------------------------------


def _audit(action: str, message: Message, recipients: list[str], actor: User | None,
           actor_name: str, details: dict | None = None) -> QueueAudit:
    name = actor.get_username() if actor is not None else (actor_name or "system")
    log.info("queue %s: %s of %d recipient(s) by %s", message.queue_id, action,
             len(recipients), name)
    return QueueAudit.objects.create(
        action=action, actor=actor if actor is not None and actor.pk else None,
        actor_name=name, queue_id=message.queue_id,
        message=message if action != QueueAudit.Action.DELETE else None,
        recipients=recipients, details=details or {},
    )


def _message(queue_id: str) -> Message:
    message = Message.objects.select_for_update().filter(queue_id=queue_id).first()
    if message is None:
        raise LookupError(f"no message with queue id {queue_id!r}")
    return message


@transaction.atomic
def retry_now(queue_id: str, *, actor: User | None = None,
              actor_name: str = "") -> QueueAudit | None:
    """Make the message's queued and deferred recipients due now; None if it has none."""
    message = _message(queue_id)
    pending = message.recipients.filter(state__in=PENDING)
    addresses = list(pending.values_list("address", flat=True))
    if not addresses:
        return None
    pending.update(next_attempt_at=timezone.now())
    announce_new_mail()
    return _audit(QueueAudit.Action.RETRY, message, addresses, actor, actor_name)


@transaction.atomic
def hold(queue_id: str, *, actor: User | None = None,
         actor_name: str = "") -> QueueAudit | None:
    """Stop delivery of the message's queued and deferred recipients until released.

    One already on the wire finishes; its outcome is written (a deferral keeps it held).
    """
    message = _message(queue_id)
    pending = message.recipients.filter(state__in=PENDING)
    addresses = list(pending.values_list("address", flat=True))
    if not addresses:
        return None
    pending.update(state=State.HELD, updated=timezone.now())
    return _audit(QueueAudit.Action.HOLD, message, addresses, actor, actor_name)


@transaction.atomic
def release(queue_id: str, *, actor: User | None = None,
            actor_name: str = "") -> QueueAudit | None:
    """Held recipients due again now (deferred if they were tried before, else queued)."""
    message = _message(queue_id)
    held = message.recipients.filter(state=State.HELD)
    addresses = list(held.values_list("address", flat=True))
    if not addresses:
        return None
    now = timezone.now()
    held.filter(attempts=0).update(state=State.QUEUED, next_attempt_at=now, updated=now)
    held.filter(attempts__gt=0).update(state=State.DEFERRED, next_attempt_at=now, updated=now)
    announce_new_mail()
    return _audit(QueueAudit.Action.RELEASE, message, addresses, actor, actor_name)


@transaction.atomic
def delete(queue_id: str, *, actor: User | None = None, actor_name: str = "") -> QueueAudit:
    """Delete the message with its recipients, attempts and events; the audit entry keeps the
    queue id, sender and each recipient's state at deletion."""
    message = _message(queue_id)
    states = list(message.recipients.values_list("address", "state"))
    entry = _audit(QueueAudit.Action.DELETE, message, [a for a, _ in states], actor, actor_name,
                   {"mail_from": message.mail_from, "states": [list(s) for s in states]})
    message.delete()
    return entry
