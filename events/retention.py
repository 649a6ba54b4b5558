"""Events past RETENTION_EVENT_DAYS, deleted in small batches (`manage.py prune`).

Statistics are computed from events (the dashboard's figures, events/stats.py once it exists),
so events are kept much longer than message bodies by default (400 days against 30). When
events/stats.py has a `roll_up(before)` that stores aggregates, prune calls it first, so that
what statistics need survives the delete.
"""
from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from datetime import datetime

from smtpeter_site.batches import in_batches

from .models import Event

log = logging.getLogger("events.retention")


def roll_up(before: datetime) -> bool:
    """Let events.stats store its aggregates of the events before ``before``; False when
    there is no such step yet."""
    try:
        stats = importlib.import_module("events.stats")
    except ImportError:
        return False
    step = getattr(stats, "roll_up", None)
    if step is None:
        return False
    step(before)
    return True


def prune_events(before: datetime, batch: int, pause: float = 0.0,
                 on_batch: Callable[[int, float], None] | None = None) -> int:
    """Delete events older than ``before`` (the ORM delete: suppression entries that point
    at one keep their row, their link is set to null)."""
    roll_up(before)

    def delete(ids: list[int]) -> int:
        return Event.objects.filter(pk__in=ids).delete()[1].get("events.Event", 0)

    return in_batches(Event.objects.filter(time__lt=before), delete, batch, pause, on_batch)
