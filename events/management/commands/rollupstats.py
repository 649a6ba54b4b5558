"""manage.py rollupstats [--days N]: roll up the closed days of the last N days for the
Statistics page ahead of its first read (a daily cron or timer); days already rolled up are
skipped, so running it twice, or beside a page doing the same, is harmless."""
from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from events import stats


class Command(BaseCommand):
    help = "Roll up the closed days of the last N days into the statistics tables."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=stats.MAX_DAYS,
                            help=f"how many days back (default {stats.MAX_DAYS})")

    def handle(self, *args, days: int, **options) -> None:
        now = timezone.now()
        last = stats.last_closed_day(now)
        first = last - timedelta(days=max(days, 1) - 1)
        rolled = stats.roll_up(first, last, now)
        self.stdout.write(f"rolled up {rolled} day(s) from {first} to {last}")
