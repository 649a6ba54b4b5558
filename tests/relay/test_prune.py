"""`manage.py prune` against a large events table (200,000 rows, inserted in one executemany):
everything past its retention goes, in transactions of --batch rows; what is not (recent rows,
messages still in the queue, unread intake) stays, and a message whose body went still shows."""
import time
from datetime import UTC, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from events.models import DailyStat, Event
from relay import suppression
from relay.models import Capture, Message, Recipient
from smtpeter_site.db import insert_sql

from .test_pages import make_message, signed_in

pytestmark = pytest.mark.django_db(transaction=True)
OLD_EVENTS = 200_000
BATCH = 5_000


def aged(message: Message, days: int) -> Message:
    Message.objects.filter(pk=message.pk).update(received_at=timezone.now() - timedelta(days=days))
    return message


def test_prune_deletes_what_is_past_retention_in_small_transactions(alice, staff):
    now = timezone.now()
    done = aged(make_message(alice, recipients=("a@example.org",), state="delivered"), 40)
    waiting = aged(make_message(alice, recipients=("b@example.org", "c@example.org")), 40)
    Recipient.objects.filter(message=waiting, address="c@example.org").update(state="failed")
    fresh = make_message(alice, recipients=("d@example.org",), state="delivered")
    rcpt = done.recipients.get()
    Capture.objects.create(recipient=rcpt, message=done, time=now - timedelta(days=40),
                           mail_from="x@example.com", data=b"old copy")
    fresh_rcpt = fresh.recipients.get()
    Capture.objects.create(recipient=fresh_rcpt, message=fresh, time=now,
                           mail_from="x@example.com", data=b"new copy")
    read = aged(make_message(None, kind="bounce", recipients=("postmaster@b.test",),
                             state="intake", intake_done_at=now), 40)
    unread = aged(make_message(None, kind="bounce", recipients=("fbl@b.test",),
                               state="intake"), 40)

    old_time = now - timedelta(days=500)
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.executemany(
            insert_sql(connection, Event, ["type", "time", "message", "recipient", "data",
                                           "flags"]),
            [("delivery", old_time, done.pk, rcpt.pk, "{}", "[]") for _ in range(OLD_EVENTS)])
    print(f"{OLD_EVENTS} events inserted in {time.monotonic() - started:.1f} s")
    kept_event = Event.objects.create(type="delivery", message=fresh, recipient=fresh_rcpt)
    linked = Event.objects.filter(time__lt=now - timedelta(days=450)).order_by("pk").first()
    entry = suppression.add(alice.pk, "gone@example.org", "hard_bounce", event_id=linked.pk)

    out = StringIO()
    started = time.monotonic()
    call_command("prune", "--batch", str(BATCH), stdout=out)
    print(out.getvalue(), f"prune took {time.monotonic() - started:.1f} s", sep="")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("message bodies: 1 older than 30 days pruned in 1 transaction")
    assert lines[1].startswith("captured copies: 1 older than 30 days pruned")
    assert lines[2].startswith("intake messages: 1 older than 30 days pruned")
    assert lines[3].startswith(f"events: {OLD_EVENTS} older than 400 days pruned in "
                               f"{OLD_EVENTS // BATCH} transaction(s)")

    assert bytes(Message.objects.get(pk=done.pk).raw) == b""
    assert bytes(Message.objects.get(pk=waiting.pk).raw) != b""  # a recipient still queued
    assert bytes(Message.objects.get(pk=fresh.pk).raw) != b""
    assert list(Capture.objects.values_list("data", flat=True)) == [b"new copy"]
    assert set(Message.objects.filter(kind="bounce").values_list("pk", flat=True)) == {unread.pk}
    assert not Message.objects.filter(pk=read.pk).exists()
    assert list(Event.objects.values_list("pk", flat=True)) == [kept_event.pk]
    entry.refresh_from_db()
    assert entry.event_id is None  # the suppression outlives its event
    # The Statistics page's figures for those days outlive their events: rolled up first.
    assert DailyStat.objects.filter(
        day=old_time.astimezone(UTC).date(), owner=alice, tag="", metric="delivered",
    ).values_list("total", flat=True).first() == OLD_EVENTS
    # The message whose body went still has its page: envelope, recipients, no body.
    page = signed_in(staff).get(f"/messages/{done.queue_id}/")
    assert page.status_code == 200 and b"a@example.org" in page.content

    again = StringIO()
    call_command("prune", "--batch", str(BATCH), stdout=again)
    assert [line.split(" older")[0] for line in again.getvalue().splitlines()] == [
        "message bodies: 0", "captured copies: 0", "intake messages: 0", "events: 0"]


def test_prune_keeps_everything_a_zero_setting_keeps(settings, alice):
    settings.RETENTION_BODY_DAYS = 0
    done = aged(make_message(alice, recipients=("a@example.org",), state="delivered"), 40)
    out = StringIO()
    call_command("prune", stdout=out)
    assert "message bodies: kept (RETENTION_BODY_DAYS=0)" in out.getvalue()
    assert bytes(Message.objects.get(pk=done.pk).raw) != b""
