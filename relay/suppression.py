"""Each customer's suppression list: addresses their mail is not delivered to.

Intake adds hard bounces, complaints and repeated soft bounces (add, record_soft_bounce);
people add and remove entries in the dashboard or by CSV (each change audited, like login
changes); delivery asks for_owners() for each claim batch. Addresses are kept
lower-cased, one entry per owner and address; an expired entry no longer suppresses and is
replaced by the next add.
"""
from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from smtpeter_site.db import per_vendor

from .models import Message, SoftBounce, Suppression, SuppressionAudit

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser as User

log = logging.getLogger("relay.suppression")
Reason = Suppression.Reason
Source = Suppression.Source
Action = SuppressionAudit.Action
MAX_ADDRESS = 320  # RFC 5321: 64 + 1 + 255
MAX_DETAIL = 1000
IMPORT_MAX_ROWS = 100_000
CSV_FIELDS = ["address", "reason", "detail", "created", "expires_at", "source"]
_UNSET = object()
ADDRESSES_PER_QUERY = 500  # well under SQLite's limit of bound parameters
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def normalize(address: str) -> str:
    """The address as the list keeps it: trimmed, without <>, lower-cased. ValueError when it
    is not a plausible mailbox (local@domain, no spaces or control characters)."""
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    text = text.lower()
    local, at, domain = text.rpartition("@")
    if (not at or not local or not domain or len(text) > MAX_ADDRESS
            or any(ch.isspace() or ord(ch) < 32 or ch in "<>,;" for ch in text)):
        raise ValueError(f"not an email address: {address[:100]!r}")
    return text


def default_expiry(reason: str, now: datetime) -> datetime | None:
    """When an entry added now for ``reason`` stops suppressing (None: never by itself)."""
    days = {Reason.HARD_BOUNCE: settings.SUPPRESSION_HARD_BOUNCE_DAYS,
            Reason.SOFT_BOUNCES: settings.SUPPRESSION_SOFT_BOUNCE_DAYS}.get(reason, 0)
    return now + timedelta(days=days) if days else None


def _active(now: datetime) -> Q:
    return Q(expires_at__isnull=True) | Q(expires_at__gt=now)


# -- reads ---------------------------------------------------------------------------------


def is_suppressed(owner_id: int, addresses: Iterable[str],
                  now: datetime | None = None) -> dict[str, Suppression]:
    """{lower-cased address: its active entry} for those of ``addresses`` on the owner's list;
    one query however many addresses. Addresses that do not parse are not suppressed."""
    wanted = set()
    for address in addresses:
        try:
            wanted.add(normalize(address))
        except ValueError:
            continue
    if not wanted:
        return {}
    found = Suppression.objects.filter(_active(now or timezone.now()), owner_id=owner_id,
                                       address__in=wanted)
    return {s.address: s for s in found}


def for_message(message_id: int, addresses: Iterable[str],
                now: datetime | None = None) -> dict[str, str]:
    """{lower-cased address: reason} for the recipients of this message its owner suppresses;
    one query. DSNs and mail without an owner are never suppressed.

    Hand-written SQL: delivery asks this for every message, and building the ORM query (with
    its subquery) on a database thread held the GIL from the event loop long enough to halve
    the plain delivery rate (bench/README.md, "Delivery").
    """
    wanted = sorted({a.strip().lower() for a in addresses})
    if not wanted:
        return {}
    conn = connections[DEFAULT_DB_ALIAS]
    when = conn.ops.adapt_datetimefield_value(now or timezone.now())
    with conn.cursor() as cursor:
        cursor.execute(_for_message_sql(conn) + f"({', '.join(['%s'] * len(wanted))})",
                       [message_id, when, *wanted])
        return dict(cursor.fetchall())


def for_owners(addresses: dict[int, Iterable[str]],
               now: datetime | None = None) -> dict[tuple[int, str], str]:
    """{(owner id, lower-cased address): reason} for those of ``addresses`` ({owner id:
    addresses}) their owner suppresses: delivery asks this once per claim batch, in one query
    per ADDRESSES_PER_QUERY addresses, instead of for_message() per message."""
    wanted = {(owner, a.strip().lower()) for owner, found in addresses.items() for a in found}
    if not wanted:
        return {}
    active = _active(now or timezone.now())
    owners = sorted({owner for owner, _ in wanted})
    names = sorted({a for _, a in wanted})
    hits = {}
    for i in range(0, len(names), ADDRESSES_PER_QUERY):
        for owner, address, reason in (
                Suppression.objects.filter(active, owner_id__in=owners,
                                           address__in=names[i:i + ADDRESSES_PER_QUERY])
                .values_list("owner_id", "address", "reason")):
            if (owner, address) in wanted:
                hits[(owner, address)] = reason
    return hits


@per_vendor
def _for_message_sql(conn) -> str:
    qn = conn.ops.quote_name
    s, m = Suppression._meta, Message._meta

    def col(meta, name: str) -> str:
        return qn(meta.get_field(name).column)

    return (
        f"SELECT s.{col(s, 'address')}, s.{col(s, 'reason')}"
        f" FROM {qn(s.db_table)} s JOIN {qn(m.db_table)} m"
        f" ON s.{col(s, 'owner')} = m.{col(m, 'owner')}"
        f" WHERE m.{qn(m.pk.column)} = %s AND m.{col(m, 'dsn_of')} IS NULL"
        f" AND (s.{col(s, 'expires_at')} IS NULL OR s.{col(s, 'expires_at')} > %s)"
        f" AND s.{col(s, 'address')} IN "
    )


def search(owner_id: int | None, text: str = "", reason: str = "", state: str = "active",
           customer: str = "", now: datetime | None = None) -> QuerySet[Suppression]:
    """Entries of one owner (None: every owner, for staff; ``customer`` narrows that to a
    username), newest first. text: part of the address; state: active, expired or all."""
    now = now or timezone.now()
    qs = Suppression.objects.select_related("owner")
    if owner_id is not None:
        qs = qs.filter(owner_id=owner_id)
    elif customer:
        qs = qs.filter(owner__username=customer)
    if text:
        qs = qs.filter(address__contains=text.strip().lower())
    if reason:
        qs = qs.filter(reason=reason)
    if state == "active":
        qs = qs.filter(_active(now))
    elif state == "expired":
        qs = qs.filter(expires_at__lte=now)
    return qs.order_by("-created", "-id")


def entry(owner_id: int, entry_id: int) -> Suppression | None:
    """One entry of the owner's list by id (another owner's is None, as a missing one)."""
    return Suppression.objects.filter(owner_id=owner_id, pk=entry_id).first()


def is_active(entry: Suppression, now: datetime | None = None) -> bool:
    return entry.expires_at is None or entry.expires_at > (now or timezone.now())


# -- changes -------------------------------------------------------------------------------


def _audit(action: str, owner_id: int, address: str, actor: User | None, ip: str | None,
           reason: str = "", details: dict | None = None,
           owner_name: str | None = None) -> SuppressionAudit:
    from credentials.services import actor_label, key_details

    return SuppressionAudit(
        action=action, actor=actor if actor is not None and actor.pk else None,
        actor_name=actor_label(actor),
        owner_id=owner_id, owner_name=owner_name or _owner_name(owner_id), address=address,
        reason=reason, ip=ip or None, details={**(details or {}), **key_details()})


def _owner_name(owner_id: int) -> str:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(pk=owner_id).first()
    return user.get_username() if user is not None else str(owner_id)


def _snapshot(entry: Suppression) -> dict:
    return {"reason": entry.reason, "detail": entry.detail, "source": entry.source,
            "created": entry.created.isoformat(),
            "expires_at": entry.expires_at.isoformat() if entry.expires_at else None}


def _lasts_longer(new: datetime | None, old: datetime | None) -> bool:
    return old is not None and (new is None or new > old)


def _put(owner_id: int, address: str, reason: str, detail: str, event_id: int | None,
         source: str, expires_at, now: datetime) -> tuple[Suppression, bool]:
    """Create or refresh the entry; (entry, changed). An active entry gives way only to one
    that lasts longer, or as long with other words (a complaint is never shortened by a later
    hard bounce; the same row imported twice changes nothing)."""
    if reason not in Reason.values:
        raise ValueError(f"unknown reason {reason!r}; known: {', '.join(Reason.values)}")
    expires = default_expiry(reason, now) if expires_at is _UNSET else expires_at
    values = {"reason": reason, "detail": detail[:MAX_DETAIL], "event_id": event_id,
              "source": source, "created": now, "expires_at": expires}
    for _ in range(2):  # a concurrent add of the same address wins the insert: update it
        entry = (Suppression.objects.select_for_update()
                 .filter(owner_id=owner_id, address=address).first())
        if entry is None:
            try:
                with transaction.atomic():
                    return Suppression.objects.create(
                        owner_id=owner_id, address=address, **values), True
            except IntegrityError:
                continue
        active = entry.expires_at is None or entry.expires_at > now
        if active and not _lasts_longer(expires, entry.expires_at) and (
                expires != entry.expires_at
                or (values["reason"], values["detail"]) == (entry.reason, entry.detail)):
            return entry, False
        for name, value in values.items():
            setattr(entry, name, value)
        entry.save()
        return entry, True
    raise IntegrityError(f"could not add <{address}> for owner {owner_id}")


@transaction.atomic
def add(owner_id: int, address: str, reason: str, *, detail: str = "",
        event_id: int | None = None, source: str | None = None, actor: User | None = None,
        ip: str | None = None, expires_at=_UNSET,
        now: datetime | None = None) -> Suppression:
    """Put ``address`` on the owner's list (or refresh its entry) and return the entry.

    Expiry by reason from the settings unless given (None: never). Changes by a person
    (``actor``; source dashboard unless said) are audited; intake's adds (no actor, source
    intake) are traced by their event instead.
    Idempotent: adding again what is there changes nothing but its time and detail.
    """
    now = now or timezone.now()
    address = normalize(address)
    source = source or (Source.INTAKE if actor is None else Source.DASHBOARD)
    entry, changed = _put(owner_id, address, reason, detail, event_id, source, expires_at, now)
    if changed:
        log.info("suppression: <%s> added for owner %s (%s, %s) by %s", address, owner_id,
                 reason, source, actor.get_username() if actor is not None else "system")
    if actor is not None:
        _audit(Action.ADDED, owner_id, address, actor, ip, reason,
               {"after": _snapshot(entry), "changed": changed}).save()
    return entry


@transaction.atomic
def remove(owner_id: int, address: str, *, actor: User | None, ip: str | None = None) -> bool:
    """Take ``address`` off the owner's list, with its soft bounce count; False if it was not
    there. Audited."""
    address = normalize(address)
    entry = (Suppression.objects.select_for_update()
             .filter(owner_id=owner_id, address=address).first())
    SoftBounce.objects.filter(owner_id=owner_id, address=address).delete()
    if entry is None:
        return False
    before = _snapshot(entry)
    entry.delete()
    log.info("suppression: <%s> removed for owner %s by %s", address, owner_id,
             actor.get_username() if actor is not None else "system")
    _audit(Action.REMOVED, owner_id, address, actor, ip, before["reason"],
           {"before": before}).save()
    return True


@transaction.atomic
def record_soft_bounce(owner_id: int, address: str, *, event_id: int | None = None,
                       detail: str = "", now: datetime | None = None) -> Suppression | None:
    """Count one soft bounce; the SUPPRESSION_SOFT_BOUNCES-th within
    SUPPRESSION_SOFT_WINDOW_DAYS adds the address (reason soft_bounces), and that entry is
    returned. A bounce already counted (same event) is not counted again."""
    now = now or timezone.now()
    address = normalize(address)
    since = now - timedelta(days=settings.SUPPRESSION_SOFT_WINDOW_DAYS)
    mine = SoftBounce.objects.filter(owner_id=owner_id, address=address)
    mine.filter(time__lt=since).delete()
    if event_id is None or not SoftBounce.objects.filter(event_id=event_id).exists():
        SoftBounce.objects.create(owner_id=owner_id, address=address, time=now,
                                  event_id=event_id)
    count = mine.filter(time__gte=since).count()
    if count < settings.SUPPRESSION_SOFT_BOUNCES:
        return None
    detail = f"{count} soft bounces in {settings.SUPPRESSION_SOFT_WINDOW_DAYS} days" + (
        f"; last: {detail}" if detail else "")
    return add(owner_id, address, Reason.SOFT_BOUNCES, detail=detail, event_id=event_id,
               now=now)


def record_bounce(owner_id: int, address: str, bounce_class: str, *, detail: str = "",
                  event_id: int | None = None, now: datetime | None = None
                  ) -> Suppression | None:
    """What intake calls for each bounced recipient: "hard" adds the address at once,
    "soft" counts towards SUPPRESSION_SOFT_BOUNCES. The entry when the address is (now)
    suppressed, else None."""
    if bounce_class == "hard":
        return add(owner_id, address, Reason.HARD_BOUNCE, detail=detail, event_id=event_id,
                   now=now)
    if bounce_class == "soft":
        return record_soft_bounce(owner_id, address, event_id=event_id, detail=detail, now=now)
    raise ValueError(f"bounce class must be hard or soft, not {bounce_class!r}")


def record_complaint(owner_id: int, address: str, *, detail: str = "",
                     event_id: int | None = None, now: datetime | None = None) -> Suppression:
    """What intake calls for a complaint: the address is suppressed until removed."""
    return add(owner_id, address, Reason.COMPLAINT, detail=detail, event_id=event_id, now=now)


# -- CSV -----------------------------------------------------------------------------------


def export_csv(out: IO[str], entries: Iterable[Suppression]) -> None:
    """Write entries as CSV (CSV_FIELDS, a header line first); import_csv reads it back."""
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    for e in entries:
        writer.writerow([_cell(e.address), e.reason, _cell(e.detail), e.created.isoformat(),
                         e.expires_at.isoformat() if e.expires_at else "", e.source])


def _cell(text: str) -> str:
    # A cell a spreadsheet would run as a formula (CSV injection) gets a leading quote.
    return "'" + text if text[:1] in _FORMULA else text


@dataclass
class ImportResult:
    added: int = 0  # new entries, or entries refreshed
    unchanged: int = 0  # already suppressed for at least as long
    errors: list[str] = field(default_factory=list)  # "line 3: why", at most 20 kept
    error_count: int = 0


def import_csv(owner_id: int, data: str, *, actor: User, ip: str | None = None,
               now: datetime | None = None) -> ImportResult:
    """Add every row of a CSV text to the owner's list, in one transaction, one audit entry
    per address added. Columns by header: address (required), reason (default manual),
    detail, expires_at (ISO 8601; empty: never); others are ignored, so an export imports
    back. A file without a header line is read as one address per line. Bad rows are
    skipped and reported; nothing is written if no row is good."""
    now = now or timezone.now()
    result = ImportResult()
    rows = _rows(data)
    if len(rows) > IMPORT_MAX_ROWS:
        result.errors.append(f"{len(rows)} rows; at most {IMPORT_MAX_ROWS} at once")
        result.error_count += 1
        return result
    audits = []
    owner_name = _owner_name(owner_id)
    with transaction.atomic():
        for line, row in rows:
            try:
                address = normalize(row.get("address", ""))
                reason = (row.get("reason") or Reason.MANUAL).strip()
                expires = _expiry(row.get("expires_at", ""))
                entry, changed = _put(owner_id, address, reason, row.get("detail", "").strip(),
                                      None, Source.IMPORT, expires, now)
            except ValueError as exc:
                _error(result, f"line {line}: {exc}")
                continue
            if changed:
                result.added += 1
                audits.append(_audit(Action.IMPORTED, owner_id, address, actor, ip, reason,
                                     {"after": _snapshot(entry)}, owner_name))
            else:
                result.unchanged += 1
        SuppressionAudit.objects.bulk_create(audits, batch_size=1000)
    log.info("suppression: %d address(es) imported for owner %s by %s (%d unchanged, "
             "%d bad)", result.added, owner_id, actor.get_username(), result.unchanged,
             result.error_count)
    return result


def _error(result: ImportResult, text: str) -> None:
    result.error_count += 1
    if len(result.errors) < 20:
        result.errors.append(text)


def _expiry(text: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        when = parse_datetime(text)
    except ValueError:
        when = None
    if when is None:
        raise ValueError(f"expires_at is not an ISO 8601 date and time: {text[:40]!r}")
    return when if timezone.is_aware(when) else timezone.make_aware(when, UTC)


def _rows(data: str) -> list[tuple[int, dict[str, str]]]:
    data = data.lstrip("\ufeff")  # a spreadsheet's byte order mark
    lines = data.splitlines()
    first = next((line for line in lines if line.strip()), "")
    if "address" not in [c.strip().lower() for c in first.split(",")]:
        # No header: one address per line (a plain list), the first column of each.
        reader = csv.reader(io.StringIO(data))
        return [(reader.line_num, {"address": row[0]}) for row in reader
                if row and row[0].strip()]
    reader = csv.DictReader(io.StringIO(data))
    reader.fieldnames = [(f or "").strip().lower() for f in reader.fieldnames or []]
    rows = []
    for row in reader:
        row = {k: (v or "") for k, v in row.items() if isinstance(k, str)}
        if not any(v.strip() for v in row.values()):
            continue
        for key in ("address", "detail"):  # undo the formula guard of export_csv
            if row.get(key, "")[:1] == "'" and row[key][1:2] in _FORMULA:
                row[key] = row[key][1:]
        rows.append((reader.line_num, row))
    return rows
