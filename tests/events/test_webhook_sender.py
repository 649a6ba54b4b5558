"""The webhooks role inside a real runsmtp (capture mode): mail submitted over TLS ends in a
delivery event, whose signed POST reaches a real HTTP receiver started here, which checks it
with the `standardwebhooks` library. Retries, Retry-After, 410, the window, the SSRF refusal,
and a kill -9 between the event and the POST."""
import time

import pytest
from django.db import connection

from credentials import services as logins
from events import webhooks
from events.models import Event, WebhookAttempt, WebhookAudit, WebhookDelivery, WebhookEndpoint
from tests.relay.test_delivery import HTML, submit, wait_for

from .receiver import LOCAL, Receiver, no_traceback, start

pytestmark = pytest.mark.django_db(transaction=True)
@pytest.fixture(scope="module")
def hook_server(django_db_setup, django_db_blocker, tls_files, tmp_path_factory):
    with django_db_blocker.unblock():
        connection.ensure_connection()
    server = start(tls_files, tmp_path_factory)
    yield server
    server.stop()
    no_traceback(server)


def test_a_delivery_event_is_posted_signed_with_its_fields(hook_server, alice, receiver,
                                                             endpoint):
    ep, secret = endpoint
    login, password = logins.create_login(alice)
    [queue_id] = submit(hook_server, login, password, ["bob@example.org"],
                        HTML.replace(b"news", b"news, weekly"))
    [req] = receiver.wait(1)
    body = req.verified(secret)  # raises unless the signature is right
    event = Event.objects.get(type="delivery", message__queue_id=queue_id)
    assert body["type"] == "delivery"
    data = body["data"]
    assert (data["id"], data["message_id"], data["recipient"], data["tags"]) == (
        event.pk, queue_id, "bob@example.org", ["news", "weekly"])
    assert data["recipient_id"] == event.recipient_id and data["status"].startswith("2.")
    assert req.headers["webhook-id"] == f"msg_{WebhookDelivery.objects.get().pk}"
    assert req.headers["webhook-signature"].startswith("v1,")
    assert req.headers["content-type"] == "application/json"
    # Another secret does not verify it: the signature is over this endpoint's secret.
    other = webhooks.new_secret()
    with pytest.raises(Exception, match="signature"):
        req.verified(other)
    row = wait_for(lambda: WebhookDelivery.objects.filter(state="delivered").first(),
                   what="the outbox row done")
    assert (row.attempts, row.last_status, row.event_id, row.last_response) == (
        1, 200, event.pk, "thanks")
    assert row.last_duration_ms is not None
    [attempt] = WebhookAttempt.objects.filter(endpoint=ep)
    assert (attempt.status, attempt.response_excerpt) == (200, "thanks")
    # Not subscribed to opens or deferrals: only the one POST came.
    time.sleep(0.5)
    assert len(receiver.requests) == 1


def test_a_failing_receiver_gets_retries_with_the_same_webhook_id(hook_server, alice,
                                                                   receiver, endpoint):
    _, secret = endpoint
    receiver.plan = [(500, {}, b"down"), (502, {}, b"still down")]
    login, password = logins.create_login(alice)
    submit(hook_server, login, password, ["c@example.org"], HTML)
    reqs = receiver.wait(3)
    assert len({r.headers["webhook-id"] for r in reqs}) == 1
    assert all(r.verified(secret)["data"]["recipient"] == "c@example.org" for r in reqs)
    assert reqs[1].time - reqs[0].time >= 0.25  # WEBHOOK_RETRY_FIRST
    row = wait_for(lambda: WebhookDelivery.objects.filter(state="delivered").first(),
                   what="the row done after the retries")
    assert row.attempts == 3
    statuses = list(WebhookAttempt.objects.order_by("id").values_list("status", flat=True))
    assert statuses == [500, 502, 200]
    assert WebhookAttempt.objects.order_by("id")[1].response_excerpt == "still down"
    assert WebhookEndpoint.objects.get().failing_since is None


def test_retry_after_is_honoured(hook_server, alice, receiver, endpoint):
    receiver.plan = [(503, {"Retry-After": "2"}, b"busy")]
    login, password = logins.create_login(alice)
    submit(hook_server, login, password, ["d@example.org"], HTML)
    first, second = receiver.wait(2)
    # Without it the retry would come after 0.3 s.
    assert second.time - first.time >= 1.9


def test_410_disables_the_endpoint_at_once_and_re_enabling_sends_again(hook_server, alice,
                                                                        receiver, endpoint):
    ep, secret = endpoint
    receiver.plan = [(410, {}, b"gone")]
    login, password = logins.create_login(alice)
    submit(hook_server, login, password, ["e@example.org"], HTML)
    receiver.wait(1)
    ep = wait_for(lambda: WebhookEndpoint.objects.filter(enabled=False).first(),
                  what="the endpoint disabled")
    assert "410 Gone" in ep.disabled_reason
    assert WebhookAudit.objects.filter(action="disabled", endpoint=ep, actor=None).exists()
    time.sleep(1.5)  # no retry while disabled
    assert len(receiver.requests) == 1
    assert f"webhook endpoint {ep.pk} disabled: the endpoint answered 410" in (
        hook_server.log_text())
    webhooks.set_enabled(ep, True, actor=alice)
    [_, again] = receiver.wait(2)
    assert again.verified(secret)["data"]["recipient"] == "e@example.org"


def test_an_endpoint_failing_for_the_whole_window_is_disabled(hook_server, alice, receiver,
                                                               endpoint):
    receiver.plan = [(500, {}, b"no")] * 100
    login, password = logins.create_login(alice)
    submit(hook_server, login, password, ["f@example.org"], HTML)
    ep = wait_for(lambda: WebhookEndpoint.objects.filter(enabled=False).first(), timeout=20,
                  what="the endpoint disabled after WEBHOOK_RETRY_WINDOW")
    assert "every POST failed from" in ep.disabled_reason
    assert "HTTP 500" in ep.disabled_reason
    assert len(receiver.requests) >= 3
    row = WebhookDelivery.objects.get()
    assert row.state in ("failed", "pending") and row.last_status == 500


def test_a_hanging_endpoint_does_not_hold_up_another(hook_server, alice, bob, receiver,
                                                      endpoint):
    receiver.plan = ["hang"] * 50
    fast = Receiver()
    try:
        with LOCAL:
            _, bob_secret = webhooks.create_endpoint(bob, fast.url, ["delivery"])
        a_login, a_password = logins.create_login(alice)
        b_login, b_password = logins.create_login(bob)
        submit(hook_server, a_login, a_password, ["g@example.org"], HTML, count=8)
        receiver.wait(5)  # WEBHOOK_ENDPOINT_CONCURRENCY slots all hang
        started = time.monotonic()
        submit(hook_server, b_login, b_password, ["h@example.org"], HTML)
        [req] = fast.wait(1, timeout=10)
        assert req.verified(bob_secret)["data"]["recipient"] == "h@example.org"
        assert req.time - started < 2.5  # less than WEBHOOK_TIMEOUT: not queued behind
        assert len(receiver.requests) == 5  # never more than the per-endpoint limit at once
    finally:
        fast.close()


def test_the_test_event_button_s_post_arrives_signed(hook_server, alice, receiver, endpoint):
    ep, secret = endpoint
    row = webhooks.send_test(ep, actor=alice)
    [req] = receiver.wait(1)
    body = req.verified(secret)
    assert (body["type"], body["data"]["type"]) == ("test", "test")
    assert req.headers["webhook-id"] == f"msg_{row.pk}"
    wait_for(lambda: WebhookDelivery.objects.filter(state="delivered").exists(),
             what="the test row done")
