"""The one writer of events: record() for one, record_many() for a batch, each in one transaction.

Delivery, the intake and the tracking views all come through here, so that whatever has to
happen with every event (the webhook outbox row, later) happens in one place, in the same
transaction as the event itself.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Q

from .models import Event

if TYPE_CHECKING:
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
        _after_record(created)
    return created


def _after_record(events: list[Event]) -> None:
    """Inside record's transaction: where the webhook outbox rows will be written (one per
    event and subscribed endpoint), so that no event is recorded without its webhook."""


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
