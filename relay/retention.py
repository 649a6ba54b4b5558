"""What `manage.py prune` removes from the queue's tables, in small batches: the bodies of
messages whose recipients are all done (the row, envelope, recipients, attempts and tracked
links stay: the dashboard and the click endpoint still need them), captured copies (capture
mode's Outbox) and intake mail (bounces and reports that came back, once read: their events
stay with the message they were about)."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.db.models import Exists, OuterRef

from smtpeter_site.batches import in_batches

from .models import Capture, Message, Recipient

UNFINISHED = (Recipient.State.QUEUED, Recipient.State.DEFERRED, Recipient.State.HELD)
OnBatch = Callable[[int, float], None] | None


def prune_bodies(before: datetime, batch: int, pause: float = 0.0,
                 on_batch: OnBatch = None) -> int:
    """Empty the raw bytes of submitted messages received before ``before`` whose recipients
    are all finished (never one still queued, deferred or held)."""
    rows = (Message.objects.filter(kind=Message.Kind.SUBMISSION, received_at__lt=before)
            .exclude(raw=b"")
            .exclude(Exists(Recipient.objects.filter(message=OuterRef("pk"),
                                                     state__in=UNFINISHED))))

    def empty(ids: list[int]) -> int:
        # The condition again, inside the transaction: a staff retry in between wins.
        return rows.filter(pk__in=ids).update(raw=b"")

    return in_batches(rows, empty, batch, pause, on_batch)


def prune_captures(before: datetime, batch: int, pause: float = 0.0,
                   on_batch: OnBatch = None) -> int:
    def delete(ids: list[int]) -> int:
        return Capture.objects.filter(pk__in=ids).delete()[1].get("relay.Capture", 0)

    return in_batches(Capture.objects.filter(time__lt=before), delete, batch, pause, on_batch)


def prune_intake(before: datetime, batch: int, pause: float = 0.0,
                 on_batch: OnBatch = None) -> int:
    """Delete intake messages (kind bounce) received before ``before`` and already read."""
    rows = Message.objects.filter(kind=Message.Kind.BOUNCE, received_at__lt=before,
                                  intake_done_at__isnull=False)

    def delete(ids: list[int]) -> int:
        return rows.filter(pk__in=ids).delete()[1].get("relay.Message", 0)

    return in_batches(rows, delete, batch, pause, on_batch)
