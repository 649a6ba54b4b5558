"""The one writer of events: record() for one, record_many() for a batch, each in one transaction;
record_fast() for the click and open endpoints (one prepared INSERT, no model instance).

Delivery, the intake and the tracking views all come through here, so that whatever has to
happen with every event (the webhook outbox row, events.webhooks) happens in one place, in the
same transaction as the event itself.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from smtpeter_site.db import insert_sql, per_vendor

from .models import Event
from .webhooks import write_outbox

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from relay.models import Message, Recipient

TYPES = frozenset(Event.Type.values)


@dataclass(frozen=True)
class NewEvent:
    """One event to record; ids rather than objects, so that a batch costs no queries."""

    type: str
    message_id: int | None = None
    recipient_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)


def record(type: str, message: Message | int | None = None,
           recipient: Recipient | int | None = None, data: dict[str, Any] | None = None,
           flags: list[str] | None = None) -> Event:
    """Store one event (message and recipient as objects or ids) and return it."""
    return record_many([NewEvent(type, _pk(message), _pk(recipient), data or {}, flags or [])])[0]


def record_many(events: Iterable[NewEvent]) -> list[Event]:
    """Store events in one transaction (one INSERT); ValueError for an unknown type."""
    rows = []
    for e in events:
        if e.type not in TYPES:
            raise ValueError(f"unknown event type {e.type!r}; known: {', '.join(sorted(TYPES))}")
        rows.append(Event(type=e.type, message_id=e.message_id, recipient_id=e.recipient_id,
                          data=_clean(e.data), flags=list(e.flags)))
    if not rows:
        return []
    with transaction.atomic():
        created = Event.objects.bulk_create(rows)
        _after_record([e.pk for e in created], [
            NewEvent(e.type, e.message_id, e.recipient_id, e.data, e.flags) for e in created])
    return created


@per_vendor
def _insert(conn) -> tuple[str, list]:
    """The INSERT of one Event (RETURNING its id; both databases take it) and its fields."""
    fields = [f for f in Event._meta.concrete_fields if not f.primary_key]
    sql = insert_sql(conn, Event, [f.name for f in fields])
    return f"{sql} RETURNING {conn.ops.quote_name(Event._meta.pk.column)}", fields


def record_fast(type: str, message_id: int, recipient_id: int, data: dict[str, Any],
                flags: list[str], time: datetime, durable: bool = True) -> int:
    """record() for the click and open endpoints: the same event and _after_record() in one
    transaction, through a prepared INSERT; returns the event's id.

    The ORM's query machinery and a model instance (with its init signals) cost a third of a
    click's time. The values still go through each field's get_db_prep_save, and a field not
    given here gets its get_default(), so a new Event field with a plain default works; one
    with auto_now/auto_now_add or db_default would need adding here. durable=False: on
    PostgreSQL the commit does not wait for the WAL flush (a click is not acknowledged mail:
    losing the last few on a database crash is acceptable, a flush on every click is not).
    """
    if type not in TYPES:
        raise ValueError(f"unknown event type {type!r}; known: {', '.join(sorted(TYPES))}")
    data = _clean(data)
    # The wrapper itself, not the django.db.connection proxy: every attribute of the proxy is
    # an asgiref context lookup, a dozen of them per click.
    conn = connections[DEFAULT_DB_ALIAS]
    vendor = conn.vendor
    sql, fields = _insert(conn)
    given = {"type": type, "time": time, "message_id": message_id,
             "recipient_id": recipient_id, "data": data, "flags": flags}
    params = [f.get_db_prep_save(given[f.attname] if f.attname in given else f.get_default(),
                                 conn) for f in fields]
    with transaction.atomic(using=DEFAULT_DB_ALIAS), conn.cursor() as cursor:
        if not durable and vendor == "postgresql":
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        cursor.execute(sql, params)
        pk = cursor.fetchone()[0]
        _after_record([pk], [NewEvent(type, message_id, recipient_id, data, flags)])
    return pk


def last_delivery(recipient_id: int) -> datetime | None:
    """Time of the recipient's latest `delivery` event, or None: the click endpoint's "fast"
    flag. One probe of the index event_rcpt_type_time."""
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(_last_delivery_sql(connections[DEFAULT_DB_ALIAS]),
                       [Event.Type.DELIVERY, recipient_id])
        row = cursor.fetchone()
    value = row[0] if row else None
    if isinstance(value, str):  # SQLite hands back text
        value = parse_datetime(value)
    if value is not None and timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return value


def last_delivery_sql() -> str:
    """last_delivery()'s query on this database (tests read its plan)."""
    return _last_delivery_sql(connections[DEFAULT_DB_ALIAS])


@per_vendor
def _last_delivery_sql(conn) -> str:
    qn = conn.ops.quote_name
    table = qn(Event._meta.db_table)
    time, type_, recipient = (qn(Event._meta.get_field(f).column)
                              for f in ("time", "type", "recipient"))
    return f"SELECT MAX({time}) FROM {table} WHERE {type_} = %s AND {recipient} = %s"


def _after_record(ids: list[int], events: list[NewEvent]) -> None:
    """Inside the recording transaction, for every event however it was written (ids[i] is
    events[i]'s): the webhook outbox rows (one per event and subscribed endpoint), so that no
    event is recorded without its webhook."""
    write_outbox(ids, events)


def _pk(obj: Any) -> int | None:
    return obj if obj is None or isinstance(obj, int) else obj.pk


def _clean(value: Any) -> Any:
    # PostgreSQL's jsonb refuses \u0000; remote servers' replies and client text may hold it.
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def for_message(message_id: int, recipient_ids: list[int] | None = None,
                limit: int = 1000) -> list[Event]:
    """A message's events, oldest first, at most ``limit``: those of the message as a whole,
    and of every recipient or (recipient_ids given) only of those recipients."""
    events = Event.objects.filter(message_id=message_id)
    if recipient_ids is not None:
        events = events.filter(Q(recipient__isnull=True) | Q(recipient_id__in=recipient_ids))
    return list(events.order_by("time", "id")[:limit])


def search(owner_id: int, *, type: str = "", queue_id: str = "", recipient: str = "",
           login: str = "", tag: str = "", since: datetime | None = None,
           until: datetime | None = None) -> QuerySet[Event]:
    """The events of the owner's messages, newest first, with message, recipient and login
    loaded: of one type, one message (queue id), one recipient address (any case), one login
    (username), one tag, and in [since, until). Empty filters match everything."""
    from relay.services import with_tag

    events = (Event.objects.filter(message__owner_id=owner_id)
              .select_related("message", "message__login", "recipient")
              .defer("message__raw"))
    if type:
        events = events.filter(type=type)
    if queue_id:
        events = events.filter(message__queue_id=queue_id)
    if recipient:
        events = events.filter(recipient__address__iexact=recipient)
    if login:
        events = events.filter(message__login__username=login)
    if tag:
        events = with_tag(events, tag, "message__tags")
    if since is not None:
        events = events.filter(time__gte=since)
    if until is not None:
        events = events.filter(time__lt=until)
    return events.order_by("-time", "-id")
