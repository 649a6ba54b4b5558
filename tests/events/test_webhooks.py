"""events.webhooks: secrets, the SSRF rules, the outbox rows record() writes, the retry
schedule, and what the outcomes of POSTs do to rows and endpoints."""
import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook

from events import services, webhooks
from events.models import WebhookAudit, WebhookDelivery, WebhookEndpoint
from relay.models import Message, Recipient

from .receiver import LOCAL

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(alice):
    message = Message.objects.create(mail_from="app@example.com", raw=b"x", owner=alice,
                                     tags=["news"])
    return Recipient.objects.create(message=message, address="bob@example.org")


def make(owner, types=("delivery",), url="https://hooks.example.com/in"):
    with LOCAL:
        return webhooks.create_endpoint(owner, url, types, actor=owner)


def test_the_secret_is_returned_once_and_stored_only_encrypted(alice):
    endpoint, secret = make(alice)
    assert secret.startswith("whsec_") and len(secret) > 40
    stored = WebhookEndpoint.objects.get().secret_encrypted
    assert secret not in stored and secret[6:] not in stored
    assert webhooks.decrypt_secret(stored) == secret
    Webhook(secret)  # the library takes it as it is
    entry = WebhookAudit.objects.get()
    assert (entry.action, entry.actor, entry.url) == ("created", alice, endpoint.url)
    assert secret not in str(entry.details)


@pytest.mark.parametrize("url, why", [
    ("http://hooks.example.com/", "must start with https://"),
    ("ftp://hooks.example.com/", "must start with https://"),
    ("https://user:pw@hooks.example.com/", "user name or password"),
    ("https:///nohost", "has no host"),
    ("https://127.0.0.1/", "loopback, private"),
    ("https://localhost:8443/", "loopback, private"),
    ("https://10.1.2.3/", "loopback, private"),
    ("https://192.168.0.1/", "loopback, private"),
    ("https://169.254.169.254/latest/meta-data", "loopback, private"),
    ("https://[::1]/", "loopback, private"),
    ("https://[::ffff:127.0.0.1]/", "loopback, private"),
    ("https://0.0.0.0/", "loopback, private"),
    ("https://224.0.0.1/", "loopback, private"),
])
def test_urls_that_cannot_be_endpoints(alice, url, why):
    assert why in webhooks.url_problem(url)
    with pytest.raises(ValueError, match=why.split(",")[0]):
        webhooks.create_endpoint(alice, url, ["delivery"])
    assert not WebhookEndpoint.objects.exists()


def test_settings_allow_http_and_private_addresses(settings):
    assert webhooks.url_problem("https://hooks.example.com/in") is None
    assert webhooks.url_problem("https://8.8.8.8/in") is None
    settings.WEBHOOK_ALLOW_HTTP = True
    assert webhooks.url_problem("http://hooks.example.com/in") is None
    assert "loopback" in webhooks.url_problem("http://127.0.0.1:8000/in")
    settings.WEBHOOK_ALLOW_PRIVATE = True
    assert webhooks.url_problem("http://127.0.0.1:8000/in") is None
    assert webhooks.address_allowed("10.0.0.1")


def test_record_writes_one_row_per_subscribed_enabled_endpoint_of_the_owner(alice, bob, sent):
    mine, _ = make(alice, ["delivery", "click"])
    make(alice, ["bounce"])  # not subscribed to deliveries
    off, _ = make(alice, ["delivery"])
    webhooks.set_enabled(off, False, actor=alice)
    make(bob, ["delivery"])  # another customer's
    event = services.record("delivery", sent.message, sent, {"code": 250})
    [row] = WebhookDelivery.objects.all()
    assert (row.endpoint_id, row.event_id, row.state, row.attempts) == (
        mine.pk, event.pk, "pending", 0)
    # The click endpoint's fast path writes its row too.
    click = services.record_fast("click", sent.message_id, sent.pk, {"url": "https://x.test/"},
                                 [], timezone.now(), durable=False)
    assert WebhookDelivery.objects.filter(event_id=click, endpoint=mine).count() == 1
    # Events of a message without an owner, or of no message, write none.
    services.record("warning", None, None, {"reason": "x"})
    assert WebhookDelivery.objects.count() == 2


def test_the_row_is_in_the_event_s_transaction(alice, sent):
    make(alice)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.record("delivery", sent.message, sent)
        assert WebhookDelivery.objects.count() == 1
        raise RuntimeError("rolled back")
    assert not WebhookDelivery.objects.exists()


def test_the_payload_carries_the_type_s_fields(alice, sent):
    make(alice, ["failure", "click", "complaint", "bounce"])
    services.record("failure", sent.message, sent, {
        "code": 550, "enhanced": "5.1.1", "text": "no such user", "class": "hard",
        "reason": "mailbox unknown"})
    services.record("click", sent.message, sent, {"url": "https://example.com/a",
                                                  "ip": "192.0.2.1"}, ["fast"])
    services.record("complaint", sent.message, sent, {"feedback_type": "abuse"})
    services.record("bounce", sent.message, sent, {"status": "5.2.2", "class": "soft",
                                                   "reason": "mailbox full"})
    jobs = webhooks.claim("w1", 10)
    bodies = {b["type"]: b["data"] for b in (json.loads(j.body) for j in jobs)}
    common = {"message_id": sent.message.queue_id, "recipient_id": sent.pk,
              "recipient": "bob@example.org", "tags": ["news"]}
    for data in bodies.values():
        assert {k: data[k] for k in common} == common
    assert (bodies["failure"]["status"], bodies["failure"]["reason"],
            bodies["failure"]["class"]) == ("5.1.1", "mailbox unknown", "hard")
    assert (bodies["click"]["url"], bodies["click"]["machine"]) == ("https://example.com/a", True)
    assert "ip" not in bodies["click"]  # the clicker's address stays with us
    assert bodies["complaint"]["feedback_type"] == "abuse"
    assert (bodies["bounce"]["status"], bodies["bounce"]["reason"]) == ("5.2.2", "mailbox full")
    assert {j.webhook_id for j in jobs} == {f"msg_{r.pk}" for r in WebhookDelivery.objects.all()}
    # Leased: a second claim gets nothing until the lease ends.
    assert webhooks.claim("w2", 10) == []
    later = timezone.now() + timedelta(seconds=120)
    assert len(webhooks.claim("w2", 10, now=later)) == 4


def test_claim_keeps_to_the_per_endpoint_limit(alice, sent, settings):
    settings.WEBHOOK_ENDPOINT_CONCURRENCY = 2
    ep, _ = make(alice)
    for _ in range(5):
        services.record("delivery", sent.message, sent)
    assert len(webhooks.claim("w", 10)) == 2
    assert webhooks.claim("w", 10, saturated=[ep.pk]) == []
    assert len(webhooks.claim("w", 10, room={ep.pk: 1})) == 1


def test_the_retry_schedule_doubles_and_ends_with_the_window(settings):
    settings.WEBHOOK_RETRY_FIRST, settings.WEBHOOK_RETRY_MAX = 30, 6 * 3600
    settings.WEBHOOK_RETRY_WINDOW = 3 * 86400
    assert [webhooks.retry_delay(n) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert webhooks.retry_delay(30) == 6 * 3600
    created = timezone.now()
    waits, now, attempts = [], created, 0
    while (due := webhooks.next_attempt(attempts + 1, created, now)) is not None:
        attempts += 1
        waits.append((due - now).total_seconds())
        now = due
    # About three days of tries, the last at the window's end.
    assert now == created + timedelta(days=3)
    assert 15 < attempts < 30 and max(waits) == 6 * 3600
    # Retry-After is honoured, up to the window's end.
    assert webhooks.next_attempt(1, created, created, retry_after=600) == (
        created + timedelta(seconds=600))
    assert webhooks.next_attempt(1, created, created, retry_after=10 ** 7) == (
        created + timedelta(days=3))


def test_outcomes_mark_done_retry_and_disable(alice, sent, settings):
    settings.WEBHOOK_RETRY_WINDOW = 3600
    ep, _ = make(alice)
    services.record("delivery", sent.message, sent)
    services.record("delivery", sent.message, sent)
    a, b = webhooks.claim("w", 10)
    now = timezone.now()
    webhooks.record_outcomes("w", [
        webhooks.Outcome(a.delivery_id, ep.pk, 204, excerpt=""),
        webhooks.Outcome(b.delivery_id, ep.pk, 500, excerpt="oops", retry_after=120),
    ], now=now)
    done, retry = (WebhookDelivery.objects.get(pk=a.delivery_id),
                   WebhookDelivery.objects.get(pk=b.delivery_id))
    assert (done.state, done.last_status, done.last_response) == ("delivered", 204, "")
    assert (retry.last_status, retry.last_response) == (500, "oops")
    assert (retry.state, retry.attempts, retry.leased_by) == ("pending", 1, "")
    assert retry.next_attempt_at == now + timedelta(seconds=120)
    assert WebhookEndpoint.objects.get().failing_since == now
    # Still failing an hour later: the endpoint is disabled, the row given up, both say why.
    [b] = webhooks.claim("w", 10, now=now + timedelta(seconds=3600))
    webhooks.record_outcomes("w", [webhooks.Outcome(b.delivery_id, ep.pk, None,
                                                    "no answer within 15 s")],
                             now=now + timedelta(seconds=3600))
    ep.refresh_from_db()
    assert not ep.enabled and "no answer within 15 s" in ep.disabled_reason
    assert WebhookDelivery.objects.get(pk=b.delivery_id).state == "failed"
    # The customer re-enables it: the failure clock starts again.
    webhooks.set_enabled(ep, True, actor=alice)
    ep.refresh_from_db()
    assert (ep.enabled, ep.disabled_reason, ep.failing_since) == (True, "", None)
    assert list(WebhookAudit.objects.order_by("id").values_list("action", "actor_name")) == [
        ("created", "alice"), ("disabled", ""), ("enabled", "alice")]


def test_the_sender_checks_scheme_and_literal_addresses_again(settings):
    from events.sender import send_problem

    assert send_problem("https://hooks.example.com/in") == ""
    assert "WEBHOOK_ALLOW_HTTP" in send_problem("http://hooks.example.com/in")
    assert "127.0.0.1 is a refused address" in send_problem("https://127.0.0.1:8443/in")
    assert "::1 is a refused address" in send_problem("https://[::1]/in")
    assert send_problem("https://8.8.8.8/in") == ""
    settings.WEBHOOK_ALLOW_HTTP = settings.WEBHOOK_ALLOW_PRIVATE = True
    assert send_problem("http://127.0.0.1:8000/in") == ""


def test_an_unreadable_secret_disables_only_its_endpoint(alice, sent, settings):
    make(alice)
    services.record("delivery", sent.message, sent)
    settings.SECRET_KEY = "another-secret-key-than-the-one-that-encrypted-it"
    with LOCAL:
        other, _ = webhooks.create_endpoint(alice, "https://hooks.example.com/b", ["delivery"])
    services.record("delivery", sent.message, sent)
    [job] = webhooks.claim("w", 10)  # the other endpoint's row goes on
    assert job.endpoint_id == other.pk
    broken = WebhookEndpoint.objects.exclude(pk=other.pk).get()
    assert not broken.enabled and "SECRET_KEY" in broken.disabled_reason
    assert WebhookDelivery.objects.filter(endpoint=broken, state="pending",
                                          leased_by="").count() == 2


def test_an_endpoint_deleted_elsewhere_does_not_break_recording(alice, sent):
    ep, _ = make(alice)
    services.record("delivery", sent.message, sent)  # the endpoint list is cached now
    # Deleted and disabled by another process: this one's cache does not know yet.
    other, _ = make(alice)
    services.record("delivery", sent.message, sent)
    WebhookEndpoint.objects.filter(pk=ep.pk).delete()
    WebhookEndpoint.objects.filter(pk=other.pk).update(enabled=False)
    event = services.record("delivery", sent.message, sent)
    assert event.pk and not WebhookDelivery.objects.filter(event=event).exists()
