"""Events past RETENTION_EVENT_DAYS and webhook POSTs done longer ago than
RETENTION_WEBHOOK_DAYS, deleted in small batches (`manage.py prune`).

The Statistics page reads closed days from aggregates (events.stats: DailyStat, DailyLink), so
prune rolls up every day it is about to touch before deleting its events: the figures survive
the delete. Events are still kept much longer than message bodies by default (400 days against
30): the timeline of a message and the API's event list read them.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from django.db.models import Min

from smtpeter_site.batches import in_batches

from . import stats
from .models import Event, WebhookAttempt, WebhookDelivery

log = logging.getLogger("events.retention")


def roll_up(before: datetime) -> int:
    """Roll up every day that holds an event older than ``before`` (the day of ``before``
    included, as its earlier events go too); how many days were rolled up now."""
    first = Event.objects.filter(time__lt=before).aggregate(first=Min("time"))["first"]
    if first is None:
        return 0
    return stats.roll_up(first.astimezone(UTC).date(), before.astimezone(UTC).date())


def prune_events(before: datetime, batch: int, pause: float = 0.0,
                 on_batch: Callable[[int, float], None] | None = None) -> int:
    """Delete events older than ``before`` (the ORM delete: suppression entries that point
    at one keep their row, their link is set to null)."""
    roll_up(before)

    def delete(ids: list[int]) -> int:
        return Event.objects.filter(pk__in=ids).delete()[1].get("events.Event", 0)

    return in_batches(Event.objects.filter(time__lt=before), delete, batch, pause, on_batch)


def prune_webhooks(before: datetime, batch: int, pause: float = 0.0,
                   on_batch: Callable[[int, float], None] | None = None) -> int:
    """Delete outbox rows delivered or given up before ``before``, their attempt log first
    (both in one transaction per batch); pending rows stay, however old."""
    done = (WebhookDelivery.State.DELIVERED, WebhookDelivery.State.FAILED)
    rows = WebhookDelivery.objects.filter(state__in=done, done_at__lt=before)

    def delete(ids: list[int]) -> int:
        WebhookAttempt.objects.filter(delivery_id__in=ids).delete()
        # The condition again inside the transaction, though a done row never reopens.
        return rows.filter(pk__in=ids).delete()[1].get("events.WebhookDelivery", 0)

    return in_batches(rows, delete, batch, pause, on_batch)
