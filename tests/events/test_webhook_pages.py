"""The webhook pages: a customer adds an endpoint (the secret shown once), changes, disables,
re-enables, tests and deletes it, and reads its delivery log; another customer's endpoint is
404 on every URL; every form needs its CSRF token; every change is audited."""
import re

import pytest
from django.urls import reverse

from events import webhooks
from events.models import WebhookAttempt, WebhookAudit, WebhookDelivery, WebhookEndpoint
from tests.credentials.conftest import signed_in

from .receiver import LOCAL

pytestmark = pytest.mark.django_db
URLS = ["webhook", "webhook_set_enabled", "webhook_test", "webhook_delete"]


@pytest.fixture
def alice_client(alice):
    return signed_in(alice)


@pytest.fixture
def mine(alice):
    with LOCAL:
        return webhooks.create_endpoint(alice, "https://hooks.example.com/in", ["delivery"])[0]


def _once(html: str) -> str:
    return re.search(r'name="once" value="([^"]+)"', html).group(1)


def test_adding_an_endpoint_shows_its_secret_once(alice, alice_client):
    page = alice_client.get(reverse("webhooks"))
    assert page.status_code == 200 and b"No webhook endpoint yet" in page.content
    form = {"url": "https://hooks.example.com/in", "description": "orders",
            "event_types": ["delivery", "bounce"], "once": _once(page.content.decode())}
    shown = alice_client.post(reverse("webhooks"), form)
    assert shown.status_code == 200
    secret = re.search(r'id="new-secret" class="password">(whsec_[^<]+)<',
                       shown.content.decode()).group(1)
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.owner, endpoint.event_types, endpoint.description) == (
        alice, ["bounce", "delivery"], "orders")
    assert webhooks.decrypt_secret(endpoint.secret_encrypted) == secret
    assert "no-store" in shown["Cache-Control"]
    # A reload re-POSTs the form: nothing new, and the secret is not shown again.
    again = alice_client.post(reverse("webhooks"), form, follow=True)
    assert WebhookEndpoint.objects.count() == 1 and secret.encode() not in again.content
    assert b"shown once" in again.content
    listing = alice_client.get(reverse("webhooks")).content
    assert b"https://hooks.example.com/in" in listing and secret.encode() not in listing
    assert secret.encode() not in alice_client.get(reverse("webhook", args=[endpoint.pk])).content


@pytest.mark.parametrize("url, why", [
    ("http://hooks.example.com/in", b"must start with https://"),
    ("https://127.0.0.1/in", b"loopback, private"),
    ("https://169.254.169.254/latest", b"loopback, private"),
])
def test_a_refused_url_is_a_400_with_the_reason(alice_client, url, why):
    page = alice_client.get(reverse("webhooks"))
    response = alice_client.post(reverse("webhooks"), {
        "url": url, "event_types": ["delivery"], "once": _once(page.content.decode())})
    assert response.status_code == 400 and why in response.content
    assert not WebhookEndpoint.objects.exists()


def test_no_event_type_is_a_400(alice_client):
    page = alice_client.get(reverse("webhooks"))
    response = alice_client.post(reverse("webhooks"), {
        "url": "https://hooks.example.com/in", "once": _once(page.content.decode())})
    assert response.status_code == 400 and b"at least one event type" in response.content


def test_change_disable_enable_test_and_delete(alice, alice_client, mine):
    url = reverse("webhook", args=[mine.pk])
    response = alice_client.post(url, {"url": "https://hooks.example.com/v2",
                                       "event_types": ["click", "open"]})
    assert response.status_code == 302
    mine.refresh_from_db()
    assert (mine.url, mine.event_types) == ("https://hooks.example.com/v2", ["click", "open"])
    alice_client.post(reverse("webhook_set_enabled", args=[mine.pk]), {"enabled": "false"})
    page = alice_client.get(url)
    assert b"disabled by alice" in page.content and b"Enable" in page.content
    alice_client.post(reverse("webhook_set_enabled", args=[mine.pk]), {"enabled": "true"})
    assert WebhookEndpoint.objects.get().enabled
    alice_client.post(reverse("webhook_test", args=[mine.pk]))
    row = WebhookDelivery.objects.get()
    assert (row.event_id, row.payload["type"]) == (None, "test")
    assert alice_client.post(reverse("webhook_delete", args=[mine.pk])).status_code == 302
    assert not WebhookEndpoint.objects.exists()
    assert list(WebhookAudit.objects.order_by("id").values_list("action", flat=True)) == [
        "created", "changed", "disabled", "enabled", "tested", "deleted"]
    changed = WebhookAudit.objects.get(action="changed")
    assert changed.details["before"]["url"] == "https://hooks.example.com/in"
    assert changed.actor == alice and changed.ip == "127.0.0.1"


def test_the_delivery_log_shows_status_time_and_response(alice_client, mine):
    row = webhooks.send_test(mine)
    WebhookAttempt.objects.create(endpoint=mine, delivery=row, status=503, duration_ms=812,
                                  response_excerpt="<b>busy</b>, try later")
    WebhookAttempt.objects.create(endpoint=mine, delivery=row, status=None, duration_ms=15000,
                                  error="no answer within 15 s")
    html = alice_client.get(reverse("webhook", args=[mine.pk])).content.decode()
    assert "503" in html and "812 ms" in html and "&lt;b&gt;busy&lt;/b&gt;, try later" in html
    assert "no answer within 15 s" in html and f"msg_{row.pk}" in html


@pytest.mark.parametrize("name", URLS)
@pytest.mark.parametrize("method", ["get", "post"])
def test_another_customers_endpoint_is_not_found(bob, mine, name, method):
    client = signed_in(bob)
    data = {"url": "https://evil.example.com/", "event_types": ["delivery"], "enabled": "false"}
    response = getattr(client, method)(reverse(name, args=[mine.pk]), data)
    assert response.status_code == (404 if name == "webhook" or method == "post" else 405)
    after = WebhookEndpoint.objects.get()
    assert (after.url, after.enabled) == ("https://hooks.example.com/in", True)
    assert not WebhookDelivery.objects.exists()
    assert list(WebhookAudit.objects.values_list("action", flat=True)) == ["created"]
    assert b"hooks.example.com" not in client.get(reverse("webhooks")).content


@pytest.mark.parametrize("name", URLS)
def test_every_form_needs_its_csrf_token(alice, mine, name):
    client = signed_in(alice, enforce_csrf_checks=True)
    response = client.post(reverse(name, args=[mine.pk]), {"enabled": "false",
                                                            "event_types": ["open"]})
    assert response.status_code == 403
    assert WebhookEndpoint.objects.get().enabled
    assert list(WebhookAudit.objects.values_list("action", flat=True)) == ["created"]


def test_signed_out_visitors_are_sent_to_sign_in(client, mine):
    response = client.get(reverse("webhook", args=[mine.pk]))
    assert response.status_code == 302 and "/signin/" in response["Location"]
