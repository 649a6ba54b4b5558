"""/api/v1/webhooks/: list, create (secret once), retrieve, update, enable/disable, delete, the
delivery log and a test event; the dashboard's SSRF rules; another owner's endpoint is 404,
a read-only key may not write, a revoked key is 401; every change audited with the key."""
import pytest
from standardwebhooks import Webhook

from credentials import apikeys
from events import webhooks
from events.models import WebhookAudit, WebhookDelivery, WebhookEndpoint
from tests.events.receiver import LOCAL

pytestmark = pytest.mark.django_db
URL = "https://hooks.example.com/in"


def make(owner, url=URL):
    with LOCAL:
        return webhooks.create_endpoint(owner, url, ["delivery"], actor=owner)[0]


def test_create_shows_the_secret_once_and_audits_with_the_key(api, alice):
    r = api.post("/api/v1/webhooks/", {"url": URL, "event_types": ["bounce", "delivery"],
                                       "description": "crm"})
    assert r.status_code == 201, r.content
    body = r.json()
    endpoint = WebhookEndpoint.objects.get(pk=body["id"], owner=alice)
    assert body["secret"].startswith("whsec_")
    assert webhooks.decrypt_secret(endpoint.secret_encrypted) == body["secret"]
    Webhook(body["secret"])  # the library takes it
    assert body["event_types"] == ["bounce", "delivery"] and body["enabled"] is True
    shown = api.get(f"/api/v1/webhooks/{endpoint.pk}/").json()
    assert "secret" not in shown and shown["url"] == URL and shown["description"] == "crm"
    assert [e["id"] for e in api.get("/api/v1/webhooks/").json()["results"]] == [endpoint.pk]
    entry = WebhookAudit.objects.get()
    assert entry.action == "created" and entry.actor == alice
    assert entry.actor_name == f"alice (API key #{api.key.pk} test write)"
    assert entry.details["api_key"] == {"id": api.key.pk, "name": "test write"}
    assert body["secret"] not in str(entry.details)


def test_create_disabled(api):
    body = api.post("/api/v1/webhooks/", {"url": URL, "event_types": ["open"],
                                          "enabled": False}).json()
    assert body["enabled"] is False and "disabled by alice" in body["disabled_reason"]
    assert [a.action for a in WebhookAudit.objects.order_by("id")] == ["created", "disabled"]


@pytest.mark.parametrize("body,field,why", [
    ({"url": "http://hooks.example.com/", "event_types": ["delivery"]}, "url", "https://"),
    ({"url": "https://127.0.0.1/", "event_types": ["delivery"]}, "url", "loopback"),
    ({"url": "https://10.0.0.8/x", "event_types": ["delivery"]}, "url", "private"),
    ({"url": "https://169.254.169.254/latest", "event_types": ["delivery"]}, "url", "link-local"),
    ({"url": "https://[::1]/", "event_types": ["delivery"]}, "url", "loopback"),
    ({"url": "https://u:p@hooks.example.com/", "event_types": ["delivery"]}, "url", "password"),
    ({"url": URL, "event_types": []}, "event_types", ""),
    ({"url": URL, "event_types": ["teleport"]}, "event_types", ""),
    ({"url": URL}, "event_types", ""),
    ({"event_types": ["delivery"]}, "url", ""),
])
def test_refused_endpoints_are_400_with_the_reason(api, body, field, why):
    r = api.post("/api/v1/webhooks/", body)
    assert r.status_code == 400 and field in r.json(), r.content
    assert why in " ".join(r.json()[field])
    assert not WebhookEndpoint.objects.exists()


def test_private_addresses_with_the_setting(api, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = settings.WEBHOOK_ALLOW_HTTP = True
    r = api.post("/api/v1/webhooks/", {"url": "http://127.0.0.1:9/", "event_types": ["click"]})
    assert r.status_code == 201


def test_update_enable_disable_audited(api, alice):
    endpoint = make(alice)
    path = f"/api/v1/webhooks/{endpoint.pk}/"
    r = api.patch(path, {"description": "new", "event_types": ["click", "open"]})
    assert r.status_code == 200, r.content
    assert r.json()["event_types"] == ["click", "open"] and r.json()["url"] == URL
    r = api.put(path, {"url": "https://other.example.com/hook"})
    assert r.json()["url"] == "https://other.example.com/hook"
    assert r.json()["description"] == "new"
    assert api.patch(path, {"url": "https://10.1.1.1/"}).status_code == 400
    assert api.patch(path, {"event_types": []}).status_code == 400
    off = api.patch(path, {"enabled": False}).json()
    assert off["enabled"] is False and off["disabled_reason"] and off["disabled_at"]
    on = api.patch(path, {"enabled": True}).json()
    assert on["enabled"] is True and on["disabled_reason"] == "" and on["disabled_at"] is None
    actions = [(a.action, a.actor_name) for a in WebhookAudit.objects.order_by("id")]
    key = f"alice (API key #{api.key.pk} test write)"
    assert actions == [("created", "alice"), ("changed", key), ("changed", key),
                       ("disabled", key), ("enabled", key)]
    endpoint.refresh_from_db()
    assert endpoint.url == "https://other.example.com/hook"


def test_a_test_event_and_the_delivery_log(api, alice):
    endpoint = make(alice)
    r = api.post(f"/api/v1/webhooks/{endpoint.pk}/test/")
    assert r.status_code == 202, r.content
    queued = r.json()
    row = WebhookDelivery.objects.get(pk=queued["delivery"], endpoint=endpoint)
    assert queued["webhook_id"] == webhooks.webhook_id(row.pk) and row.payload["type"] == "test"
    assert WebhookAudit.objects.order_by("id").last().details["api_key"]["id"] == api.key.pk
    log = f"/api/v1/webhooks/{endpoint.pk}/deliveries/"
    assert api.get(log).json()["results"] == []
    # Two POSTs as the sender records them: a 503, then a 200.
    for status, excerpt in ((503, "busy"), (200, "thanks")):
        [job] = webhooks.claim("w1", 10)
        webhooks.record_outcomes("w1", [webhooks.Outcome(job.delivery_id, endpoint.pk, status,
                                                         duration_ms=12, excerpt=excerpt)])
        WebhookDelivery.objects.filter(pk=row.pk).update(next_attempt_at=row.created)
    entries = api.get(log).json()["results"]
    assert [(e["status"], e["response"], e["type"], e["state"]) for e in entries] == [
        (200, "thanks", "test", "delivered"), (503, "busy", "test", "delivered")]
    assert entries[0]["delivery"] == row.pk and entries[0]["event"] is None
    assert entries[0]["duration_ms"] == 12 and entries[0]["webhook_id"] == queued["webhook_id"]
    assert len(api.get(log, {"page_size": 1}).json()["results"]) == 1


def test_delete(api, alice):
    endpoint = make(alice)
    assert api.delete(f"/api/v1/webhooks/{endpoint.pk}/").status_code == 204
    assert not WebhookEndpoint.objects.exists()
    assert WebhookAudit.objects.order_by("id").last().action == "deleted"
    assert api.delete(f"/api/v1/webhooks/{endpoint.pk}/").status_code == 404


@pytest.mark.parametrize("method,suffix", [
    ("get", ""), ("patch", ""), ("put", ""), ("delete", ""), ("get", "deliveries/"),
    ("post", "test/"),
])
def test_another_owner_s_endpoint_is_404(api, bob, method, suffix):
    theirs = make(bob)
    r = getattr(api, method)(f"/api/v1/webhooks/{theirs.pk}/{suffix}")
    assert r.status_code == 404 and r.json() == {"detail": "No such webhook endpoint."}
    assert api.get("/api/v1/webhooks/").json()["results"] == []
    theirs.refresh_from_db()
    assert theirs.enabled and not WebhookDelivery.objects.exists()


@pytest.mark.parametrize("method,suffix,body", [
    ("post", "", {"url": URL, "event_types": ["delivery"]}), ("patch", "{id}/", {}),
    ("put", "{id}/", {}), ("delete", "{id}/", None), ("post", "{id}/test/", {}),
])
def test_a_read_only_key_may_not_write(api_read, alice, method, suffix, body):
    endpoint = make(alice)
    path = "/api/v1/webhooks/" + suffix.format(id=endpoint.pk)
    r = getattr(api_read, method)(path, *([body] if body is not None else []))
    assert r.status_code == 403 and r.json() == {"detail": "This API key is read-only."}
    assert api_read.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries/").status_code == 200
    assert WebhookEndpoint.objects.count() == 1 and not WebhookDelivery.objects.exists()


def test_a_revoked_key_is_401(api, alice):
    endpoint = make(alice)
    apikeys.revoke_key(api.key, actor=alice)
    assert api.get(f"/api/v1/webhooks/{endpoint.pk}/").status_code == 401
    assert api.delete(f"/api/v1/webhooks/{endpoint.pk}/").status_code == 401
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
