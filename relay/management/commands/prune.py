"""`manage.py prune`: delete what is past its retention (RETENTION_*_DAYS; 0 keeps it), in
batches of PRUNE_BATCH rows, one short transaction each. Run it daily (a systemd timer,
docs/deployment.md); it may run while runsmtp and the web app work."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from events.retention import prune_events, prune_webhooks
from relay.retention import prune_bodies, prune_captures, prune_intake

STEPS = (  # (what, setting, function)
    ("message bodies", "RETENTION_BODY_DAYS", prune_bodies),
    ("captured copies", "RETENTION_CAPTURE_DAYS", prune_captures),
    ("intake messages", "RETENTION_INTAKE_DAYS", prune_intake),
    ("webhook POSTs", "RETENTION_WEBHOOK_DAYS", prune_webhooks),
    ("events", "RETENTION_EVENT_DAYS", prune_events),
)


class Command(BaseCommand):
    help = ("Delete message bodies, captured mail, intake mail, webhook POSTs and events past "
            "their retention.")

    def add_arguments(self, parser):
        parser.add_argument("--batch", type=int, default=None,
                            help="rows per transaction (default PRUNE_BATCH)")
        parser.add_argument("--pause", type=float, default=0.0,
                            help="seconds to wait between transactions (default 0)")

    def handle(self, *args, **opts):
        batch = opts["batch"] or settings.PRUNE_BATCH
        if batch < 1 or opts["pause"] < 0:
            raise CommandError("--batch must be at least 1 and --pause at least 0")
        now = timezone.now()
        for what, name, prune in STEPS:
            days = getattr(settings, name)
            if not days:
                self.stdout.write(f"{what}: kept ({name}=0)")
                continue
            longest = [0.0, 0]

            def seen(count: int, seconds: float, longest=longest) -> None:
                longest[0] = max(longest[0], seconds)
                longest[1] += 1

            done = prune(now - timedelta(days=days), batch, opts["pause"], seen)
            self.stdout.write(f"{what}: {done} older than {days} days pruned in {longest[1]} "
                              f"transaction(s), the longest {longest[0] * 1000:.0f} ms")
