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

from events.models import DailyStat, Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from relay import suppression
from relay.models import Capture, Message, Recipient
from smtpeter_site.db import insert_sql

from .test_pages import make_message, signed_in

pytestmark = pytest.mark.django_db(transaction=True)
OLD_EVENTS = 200_000
BATCH = 5_000
OLD_HOOKS = 12_000  # webhook POSTs delivered 40 days ago, one attempt each


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
    assert lines[3].startswith("webhook POSTs: 0 older than 30 days pruned")
    assert lines[4].startswith(f"events: {OLD_EVENTS} older than 400 days pruned in "
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
        "message bodies: 0", "captured copies: 0", "intake messages: 0", "webhook POSTs: 0",
        "events: 0"]


def test_prune_keeps_everything_a_zero_setting_keeps(settings, alice):
    settings.RETENTION_BODY_DAYS = 0
    done = aged(make_message(alice, recipients=("a@example.org",), state="delivered"), 40)
    out = StringIO()
    call_command("prune", stdout=out)
    assert "message bodies: kept (RETENTION_BODY_DAYS=0)" in out.getvalue()
    assert bytes(Message.objects.get(pk=done.pk).raw) != b""


def test_prune_deletes_done_webhook_posts_and_their_log_in_small_transactions(alice):
    now = timezone.now()
    message = make_message(alice, recipients=("a@example.org",), state="delivered")
    event = Event.objects.create(type="delivery", message=message,
                                 recipient=message.recipients.get())
    endpoint = WebhookEndpoint.objects.create(owner=alice, url="https://hooks.example.org/",
                                              event_types=["delivery"], secret_encrypted="x")
    old = now - timedelta(days=40)
    columns = ["endpoint", "event", "state", "created", "attempts", "next_attempt_at",
               "leased_by", "last_error", "done_at"]
    with connection.cursor() as cursor:
        cursor.executemany(insert_sql(connection, WebhookDelivery, columns),
                           [(endpoint.pk, event.pk, "delivered", old, 1, old, "", "", old)
                            for _ in range(OLD_HOOKS)])
        ids = list(WebhookDelivery.objects.values_list("pk", flat=True))
        cursor.executemany(
            insert_sql(connection, WebhookAttempt, ["endpoint", "delivery", "time", "status",
                                                    "error", "duration_ms",
                                                    "response_excerpt"]),
            [(endpoint.pk, pk, old, 200, "", 5, "ok") for pk in ids])

    def row(state: str, done_at, attempts: int) -> WebhookDelivery:
        r = WebhookDelivery.objects.create(endpoint=endpoint, event=event, state=state,
                                           created=old, done_at=done_at, attempts=attempts)
        for _ in range(attempts):
            WebhookAttempt.objects.create(endpoint=endpoint, delivery=r, time=old, status=500)
        return r

    row("failed", old, 3)  # given up 40 days ago: goes with its three attempts
    pending = row("pending", None, 2)  # old, still retrying: stays with its log
    fresh = row("delivered", now - timedelta(days=1), 1)

    out = StringIO()
    call_command("prune", "--batch", str(BATCH), stdout=out)
    [line] = [x for x in out.getvalue().splitlines() if x.startswith("webhook POSTs")]
    assert line.startswith(f"webhook POSTs: {OLD_HOOKS + 1} older than 30 days pruned in "
                           f"{-(-(OLD_HOOKS + 1) // BATCH)} transaction(s)"), line
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {pending.pk, fresh.pk}
    assert sorted(WebhookAttempt.objects.values_list("delivery_id", flat=True)) == sorted(
        [pending.pk] * 2 + [fresh.pk])
    assert Event.objects.filter(pk=event.pk).exists()  # the event is not theirs to delete
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()


def test_prune_keeps_webhook_posts_when_their_setting_is_zero(settings, alice):
    settings.RETENTION_WEBHOOK_DAYS = 0
    endpoint = WebhookEndpoint.objects.create(owner=alice, url="https://hooks.example.org/",
                                              event_types=["delivery"], secret_encrypted="x")
    old = timezone.now() - timedelta(days=400)
    WebhookDelivery.objects.create(endpoint=endpoint, state="delivered", created=old,
                                   done_at=old, payload={"type": "test"})
    out = StringIO()
    call_command("prune", stdout=out)
    assert "webhook POSTs: kept (RETENTION_WEBHOOK_DAYS=0)" in out.getvalue()
    assert WebhookDelivery.objects.count() == 1
