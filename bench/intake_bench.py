"""Intake rate: how many stored intake messages relay.intake reads per second (parse, link,
record the events, suppression and the read mark): process_batch, several per transaction as
the worker does (--batch 50), or process_one, one transaction each (--batch 1).

A mixed set is generated: hard and soft RFC 3464 bounces to VERP addresses, ARF complaints to
fbl@ linked through the Return-Path, auto-replies and unreadable mail, each about its own sent
recipient. Also reported: parse_report alone on the same bytes, to show what the database
part costs.

Usage: python bench/intake_bench.py [--messages 2000] [--batch 50] [--database-url URL]
Without --database-url a fresh SQLite file in a temporary folder (DATA_DIR) is migrated and
used; with it, the database must be one you can throw away (it is migrated and written to).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "relay"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--database-url")
    parser.add_argument("--batch", type=int, default=50,
                        help="messages per transaction (process_batch, as the worker reads "
                             "them); 1: process_one, one transaction each")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="intake-bench-")
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    else:
        os.environ.pop("DATABASE_URL", None)
        os.environ["DATA_DIR"] = tmp
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smtpeter_site.settings")
    import logging

    import django

    django.setup()
    logging.getLogger("relay").setLevel(logging.WARNING)
    import intake_samples as samples
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from features.tokens import verp_address
    from relay import intake
    from relay.models import Message, Recipient
    from relay.reports import parse_report
    from smtpeter_site.keys import key_for

    call_command("migrate", "--noinput", "-v0")
    owner, _ = get_user_model().objects.get_or_create(username="intake-bench")
    key, domain = key_for("verp"), settings.BOUNCE_DOMAIN
    fbl = f"fbl@{domain}"
    raws, ids = [], []
    for n in range(args.messages):
        sent = Message.objects.create(owner=owner, mail_from="app@example.com", raw=b"x")
        address = f"user{n}@remote.test"
        rcpt = Recipient.objects.create(message=sent, address=address, state="delivered")
        verp = verp_address(key, sent.pk, rcpt.pk, domain)
        kind = n % 5
        if kind == 0:
            raw, to = samples.dsn(verp, address), verp
        elif kind == 1:
            raw, to = samples.dsn(verp, address, "4.2.2", "552 4.2.2 Mailbox full"), verp
        elif kind == 2:
            raw, to = samples.arf(fbl, verp, address), fbl
        elif kind == 3:
            raw, to = samples.auto_reply(verp, address), verp
        else:
            raw, to = b"Subject: re: hello\r\n\r\nplease call me\r\n", verp
        report = Message.objects.create(kind="bounce", mail_from="", raw=raw)
        Recipient.objects.create(message=report, address=to, state="intake")
        raws.append(raw)
        ids.append(report.pk)

    start = time.perf_counter()
    for raw in raws:
        parse_report(raw)
    parse_s = time.perf_counter() - start
    start = time.perf_counter()
    outcomes: dict[str, int] = {}
    if args.batch <= 1:
        read = ((pk, intake.process_one(pk)) for pk in ids)
    else:
        read = (pair for n in range(0, len(ids), args.batch)
                for pair in intake.process_batch(ids[n:n + args.batch]).items())
    for _, outcome in read:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    total_s = time.perf_counter() - start
    print(f"database: {connection.vendor}; {len(ids)} intake messages: {outcomes}")
    print(f"parse_report alone: {len(raws) / parse_s:,.0f} msg/s")
    how = "process_one" if args.batch <= 1 else f"process_batch of {args.batch}"
    print(f"{how} (parse + link + record + mark): {len(ids) / total_s:,.0f} msg/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
