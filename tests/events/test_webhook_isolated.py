"""The webhooks role in runsmtp processes of their own (no other sender may take the rows):
the SSRF refusal when sending, and a kill -9 between the event and its POST."""
import signal

import pytest

from credentials import services as logins
from events import webhooks
from events.models import WebhookAttempt, WebhookDelivery
from tests.relay.test_delivery import HTML, submit, wait_for

from .receiver import LOCAL, no_traceback, start

pytestmark = pytest.mark.django_db(transaction=True)


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
