"""Work through a big table in small transactions: ids in primary-key order (keyset, so each
batch starts where the last ended), one short transaction per batch. Used by `manage.py
prune`, whose deletes must never hold locks that the queue waits on for long."""
from __future__ import annotations

import time
from collections.abc import Callable

from django.db import transaction
from django.db.models import QuerySet


def in_batches(rows: QuerySet, apply: Callable[[list[int]], int], batch: int,
               pause: float = 0.0, on_batch: Callable[[int, float], None] | None = None) -> int:
    """apply(ids) to every row of ``rows``, ``batch`` ids per transaction, ``pause`` seconds
    between transactions; returns the sum of what apply returned. on_batch(count, seconds)
    is told each transaction's size and time."""
    done, last = 0, 0
    while True:
        ids = list(rows.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:batch])
        if not ids:
            return done
        started = time.monotonic()
        with transaction.atomic():
            count = apply(ids)
        if on_batch is not None:
            on_batch(count, time.monotonic() - started)
        done += count
        last = ids[-1]
        if pause:
            time.sleep(pause)
