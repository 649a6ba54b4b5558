"""The webhooks role inside a real runsmtp (capture mode): mail submitted over TLS ends in a
delivery event, whose signed POST reaches a real HTTP receiver started here, which checks it
with the `standardwebhooks` library. Retries, Retry-After, 410, the window, the SSRF refusal,
and a kill -9 between the event and the POST."""
import signal
import time

import pytest
from django.db import connection
from django.test import override_settings

from credentials import services as logins
from events import webhooks
from events.models import Event, WebhookAttempt, WebhookAudit, WebhookDelivery, WebhookEndpoint
from tests.relay.conftest import SERVER_ENV
from tests.relay.smtp_helpers import Server
from tests.relay.test_delivery import HTML, submit, wait_for

from .receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)
HOOK_ENV = {
    **SERVER_ENV,
    "DELIVERY_MODE": "capture",
    "WEBHOOK_ALLOW_HTTP": "true",
    "WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver is on 127.0.0.1
    "WEBHOOK_RETRY_FIRST": "0.3",
    "WEBHOOK_RETRY_MAX": "1",
    "WEBHOOK_RETRY_WINDOW": "4",
    "WEBHOOK_LEASE": "2",
    "WEBHOOK_POLL_INTERVAL": "0.2",
    "WEBHOOK_CACHE_SECONDS": "0",
    "WEBHOOK_TIMEOUT": "3",
}
LOCAL = override_settings(WEBHOOK_ALLOW_HTTP=True, WEBHOOK_ALLOW_PRIVATE=True)


def start(tls_files, tmp_path_factory, **env) -> Server:
    return Server(cert=tls_files[0], key=tls_files[1], env_extra={**HOOK_ENV, **env},
                  workdir=tmp_path_factory.mktemp("runsmtp")).start()


def no_traceback(server: Server) -> None:
    log = server.log_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]


@pytest.fixture(scope="module")
def hook_server(django_db_setup, django_db_blocker, tls_files, tmp_path_factory):
    with django_db_blocker.unblock():
        connection.ensure_connection()
    server = start(tls_files, tmp_path_factory)
    yield server
    server.stop()
    no_traceback(server)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def endpoint(alice, receiver):
    with LOCAL:
        return webhooks.create_endpoint(alice, receiver.url, ["delivery", "failure"])


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
    assert (row.attempts, row.last_status, row.event_id) == (1, 200, event.pk)
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
    assert "webhook endpoint %d disabled: the endpoint answered 410" % ep.pk in (
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


def test_private_addresses_are_refused_when_sending(alice, tls_files, tmp_path_factory,
                                                    receiver):
    with LOCAL:  # saved while allowed; the sender below does not allow it
        ep, _ = webhooks.create_endpoint(alice, receiver.url, ["delivery"])
        named, _ = webhooks.create_endpoint(
            alice, receiver.url.replace("127.0.0.1", "localhost"), ["delivery"])
    server = start(tls_files, tmp_path_factory, WEBHOOK_ALLOW_PRIVATE="false")
    try:
        login, password = logins.create_login(alice)
        submit(server, login, password, ["i@example.org"], HTML)
        attempts = wait_for(lambda: WebhookAttempt.objects.count() >= 2 and list(
            WebhookAttempt.objects.order_by("id")), what="both attempts refused")
        by_endpoint = {a.endpoint_id: a for a in attempts}
        assert by_endpoint[ep.pk].status is None
        assert "refused: 127.0.0.1 is a refused address" in by_endpoint[ep.pk].error
        assert "localhost resolves only to refused addresses" in by_endpoint[named.pk].error
        assert receiver.requests == []
        assert "refused: 127.0.0.1 is a refused address" in server.log_text()
    finally:
        server.stop()
    no_traceback(server)


def test_kill_9_between_the_event_and_its_post_loses_nothing(alice, tls_files,
                                                             tmp_path_factory, receiver,
                                                             endpoint):
    _, secret = endpoint
    receiver.plan = ["hang"]  # the first POST is in flight when the process dies
    server = start(tls_files, tmp_path_factory)
    login, password = logins.create_login(alice)
    [queue_id] = submit(server, login, password, ["k@example.org"], HTML)
    [first] = receiver.wait(1)
    server.stop(signal.SIGKILL)
    assert WebhookDelivery.objects.get().state == "pending"  # never marked done
    server.start()
    try:
        [_, second] = receiver.wait(2, timeout=20)  # after WEBHOOK_LEASE (2 s)
        assert second.headers["webhook-id"] == first.headers["webhook-id"]
        assert second.verified(secret)["data"]["message_id"] == queue_id
        wait_for(lambda: WebhookDelivery.objects.filter(state="delivered").exists(),
                 what="the row done after the restart")
    finally:
        receiver.release.set()
        server.stop()
