"""The webhooks page in a real Chromium: a customer adds an endpoint, copies its secret from the
one page that shows it, presses "Send a test event", and the signed POST reaches a real
receiver (checked with the `standardwebhooks` library) through a real runsmtp's webhooks role;
the endpoint's delivery log then shows the answer."""
import os

import pytest
from django.db import connection

from events.models import WebhookEndpoint
from tests.events.receiver import HOOK_ENV, Receiver
from tests.relay.smtp_helpers import Server

from .test_outbox_browser import wait_for

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def sender(django_db_blocker, tmp_path_factory, tls_files):
    with django_db_blocker.unblock():
        connection.ensure_connection()
    server = Server(cert=tls_files[0], key=tls_files[1], env_extra=HOOK_ENV,
                    workdir=tmp_path_factory.mktemp("runsmtp"), roles="webhooks").start()
    yield server
    server.stop()
    assert "Traceback" not in server.log_text()


@pytest.fixture
def tls_files(tmp_path_factory):
    from relay.tls import write_self_signed

    d = tmp_path_factory.mktemp("tls")
    write_self_signed(d / "cert.pem", d / "key.pem", ["localhost"])
    return d / "cert.pem", d / "key.pem"


def test_add_an_endpoint_and_send_it_a_test_event(browser, live_server, plain_http, settings,
                                                  alice, sender):
    settings.WEBHOOK_ALLOW_HTTP = settings.WEBHOOK_ALLOW_PRIVATE = True  # the receiver's URL
    receiver = Receiver()
    try:
        base = live_server.url
        page = browser.new_context().new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{base}/signin/")
        page.fill("#id_username", "alice")
        page.fill("#id_password", "alice-pw-1234!")
        page.click("button:has-text('Sign in')")
        page.wait_for_url(f"{base}/")

        page.click("nav a:has-text('Webhooks')")
        page.wait_for_url(f"{base}/webhooks/")
        page.fill("#id_url", receiver.url)
        page.check("input[name=event_types][value=delivery]")
        page.click("button:has-text('Add endpoint')")
        secret = page.locator("#new-secret").inner_text().strip()
        assert secret.startswith("whsec_")
        page.click("a:has-text('I have saved it')")
        endpoint = WebhookEndpoint.objects.get()
        page.wait_for_url(f"{base}/webhooks/{endpoint.pk}/")
        assert secret not in page.content()

        page.click("#send-test")
        page.wait_for_url(f"{base}/webhooks/{endpoint.pk}/")
        [request] = receiver.wait(1)
        assert request.verified(secret)["type"] == "test"

        def logged() -> bool:
            page.reload()
            return page.locator("tr.attempt-row td.status").count() > 0
        wait_for(logged, what="the delivery log row", page=page)
        row = page.locator("tr.attempt-row").first.inner_text()
        assert "200" in row and "thanks" in row and request.headers["webhook-id"] in row
        assert errors == []
    finally:
        receiver.close()
