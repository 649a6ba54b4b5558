"""Statistics page queries over a million events: how long events.stats.report() takes cold
(the closed days rolled up on first read), warm (read from the rollup), per login, per tag,
with machine-flagged events, and counting today's events at read time.

Generated: one big customer owning all but a few events (the worst case for a per-owner
query), 5 logins, 8 tags, over --days days; per recipient a delivery, 0-6 opens (a fifth of
them machine-flagged), 0-4 clicks on 20 URLs, some bounces and complaints. The events are
written with their times through one prepared INSERT (executemany), as record() would have
written them over the days.

Usage: python bench/stats_bench.py [--events 1000000] [--days 90] [--database-url URL]
Without --database-url a fresh SQLite file in a temporary folder (DATA_DIR) is migrated and
used; with it, the database must be one you can throw away (it is migrated and written to).
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    else:
        os.environ.pop("DATABASE_URL", None)
        os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="stats-bench-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smtpeter_site.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, transaction

    from credentials import services as logins
    from events import stats
    from events.models import Event
    from relay.models import Message, Recipient
    from smtpeter_site.db import insert_sql

    call_command("migrate", "--noinput", "-v0")
    rng = random.Random(7)
    users = get_user_model().objects
    owner, _ = users.get_or_create(username="stats-bench")
    other, _ = users.get_or_create(username="stats-bench-other")
    login_ids = [logins.create_login(owner)[0].pk for _ in range(5)]
    tags = [f"tag{n}" for n in range(8)]
    urls = [f"https://shop.example/p/{n}" for n in range(20)]
    now = datetime.now(UTC)
    first = (now - timedelta(days=args.days - 1)).replace(hour=0, minute=0, second=0,
                                                        microsecond=0)
    per_recipient = 6.0  # about the mean of the mix below
    recipients_n = int(args.events / per_recipient)
    per_day = max(1, recipients_n // args.days)

    t0 = time.perf_counter()
    fields = [f for f in Event._meta.concrete_fields if not f.primary_key]
    sql = insert_sql(connection, Event, [f.name for f in fields])
    made = 0
    for day in range(args.days):
        day_start = first + timedelta(days=day)
        with transaction.atomic():
            messages = Message.objects.bulk_create(
                Message(owner=other if n % 500 == 0 else owner, login_id=rng.choice(login_ids),
                        tags=rng.sample(tags, rng.randint(0, 2)), raw=b"x")
                for n in range(per_day))
            Message.objects.filter(pk__in=[m.pk for m in messages]).update(
                received_at=day_start + timedelta(hours=1))
            rcpts = Recipient.objects.bulk_create(
                Recipient(message=m, address=f"r{m.pk}@example.org", state="delivered")
                for m in messages)
            rows = []
            for r in rcpts:
                t = day_start + timedelta(seconds=rng.randint(3600, 86000))

                def add(type_, data=None, flags=(), at=None, r=r, t=t, rows=rows):
                    at = at or t
                    if at > now:  # not happened yet
                        return
                    given = {"type": type_, "time": at, "message_id": r.message_id,
                             "recipient_id": r.pk, "data": data or {}, "flags": list(flags)}
                    rows.append([f.get_db_prep_save(given[f.attname], connection)
                                 for f in fields])

                add("delivery")
                for _ in range(rng.randint(0, 6)):
                    add("open", {}, ["prefetch"] if rng.random() < .2 else [],
                        t + timedelta(minutes=rng.randint(1, 3000)))
                for _ in range(rng.randint(0, 4)):
                    add("click", {"url": rng.choice(urls)}, [],
                        t + timedelta(minutes=rng.randint(1, 3000)))
                roll = rng.random()
                if roll < .03:
                    add("bounce", {"class": "hard" if roll < .02 else "soft"})
                elif roll < .035:
                    add("complaint", {"feedback_type": "abuse"})
            with connection.cursor() as cursor:
                cursor.executemany(sql, rows)
            made += len(rows)
    gen_s = time.perf_counter() - t0
    print(f"database: {connection.vendor}; generated {made:,} events, "
          f"{per_day * args.days:,} recipients over {args.days} days in {gen_s:.0f} s")

    def timed(label, q, repeat=3):
        """The first read (today counted from the events) and the best of the next ones
        (today's count reused: STATS_LIVE_CACHE_SECONDS)."""
        stats.forget_live()
        spent = []
        for _ in range(1 + repeat):
            t = time.perf_counter()
            got = stats.report(q, now)
            spent.append(time.perf_counter() - t)
        print(f"{label:<46} {spent[0] * 1000:8.1f} ms {min(spent[1:]) * 1000:8.1f} ms   "
              f"(sent {got['totals']['sent']:,}, opened {got['totals']['opened']:,})")

    today = now.date()
    last = stats.last_closed_day(now)
    t = time.perf_counter()
    rolled = stats.roll_up(first.date(), last, now)
    print(f"{'cold: roll up ' + str(rolled) + ' closed days (once)':<46} "
          f"{(time.perf_counter() - t) * 1000:8.1f} ms")
    print(f"{'report() after the rollup':<46} {'first':>11} {'again':>11}")
    timed("warm: 30 days, the customer", stats.Query(owner.pk, today - timedelta(days=29),
                                                     today))
    timed(f"warm: {args.days} days, the customer",
          stats.Query(owner.pk, first.date(), today))
    timed(f"warm: {args.days} days, one login",
          stats.Query(owner.pk, first.date(), today, login_id=login_ids[0]))
    timed(f"warm: {args.days} days, one tag", stats.Query(owner.pk, first.date(), today,
                                                          tag="tag3"))
    timed(f"warm: {args.days} days, machine-flagged included",
          stats.Query(owner.pk, first.date(), today, machine=True))
    timed(f"warm: {args.days} days, the small customer",
          stats.Query(other.pk, first.date(), today))
    t = time.perf_counter()
    stats.count_day(today)
    print(f"{'the open day (today) counted from its events':<46} "
          f"{(time.perf_counter() - t) * 1000:8.1f} ms")
    t = time.perf_counter()
    for d in range(30):
        stats.count_day(today - timedelta(days=d))
    print(f"{'no rollup: 30 days counted from the events':<46} "
          f"{(time.perf_counter() - t) * 1000:8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
