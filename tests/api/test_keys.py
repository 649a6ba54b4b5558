"""API keys: Bearer authentication (unknown, revoked, expired: 401), scopes (read-only: 403
on every write), the per-key rate limit (429 with Retry-After), digests at rest, and the
dashboard page that creates and revokes keys (token shown once, audited, CSRF)."""
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from credentials import apikeys
from credentials.models import ApiKey, AuditEntry

from .conftest import ApiClient, key_client

pytestmark = pytest.mark.django_db


def test_no_key_is_401_with_a_bearer_challenge(db):
    r = ApiClient(None).get("/api/v1/events/")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.json() == {"detail": "Authentication credentials were not provided."}


@pytest.mark.parametrize("header", ["Basic YWxpY2U6cHc=", "Bearer", "Bearer smtpeter_nope",
                                    "Bearer not-even-our-prefix", "Token abc"])
def test_malformed_or_unknown_keys_are_401(db, header, caplog):
    c = Client()
    r = c.get("/api/v1/events/", headers={"Authorization": header})
    assert r.status_code == 401
    assert "detail" in r.json()


def test_a_revoked_key_is_401_and_the_log_holds_only_its_prefix(api, alice, caplog):
    assert api.get("/api/v1/events/").status_code == 200
    assert apikeys.revoke_key(api.key, actor=alice)
    r = api.get("/api/v1/events/")
    assert r.status_code == 401
    assert "revoked key" in caplog.text
    assert api.token not in caplog.text
    assert api.token[:apikeys.PREFIX_SHOWN] in caplog.text


def test_an_expired_key_is_401(db, alice):
    c = key_client(alice, "read", expires_at=timezone.now() + timedelta(hours=1))
    assert c.get("/api/v1/events/").status_code == 200
    ApiKey.objects.filter(pk=c.key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert c.get("/api/v1/events/").status_code == 401


def test_an_inactive_owner_s_key_is_401(api, alice):
    alice.is_active = False
    alice.save()
    assert api.get("/api/v1/events/").status_code == 401


def test_an_expiry_in_the_past_or_a_bad_scope_is_refused(alice):
    with pytest.raises(ValueError, match="future"):
        apikeys.create_key(alice, "k", "read", expires_at=timezone.now())
    with pytest.raises(ValueError, match="scope"):
        apikeys.create_key(alice, "k", "admin")
    with pytest.raises(ValueError, match="name"):
        apikeys.create_key(alice, "  ", "read")


@pytest.mark.parametrize("method,path,body", [
    ("post", "/api/v1/messages/", {"login": "x"}),
    ("post", "/api/v1/logins/", {}),
    ("patch", "/api/v1/logins/1/", {}),
    ("put", "/api/v1/logins/1/", {}),
    ("delete", "/api/v1/logins/1/", None),
    ("post", "/api/v1/logins/1/reset-password/", {}),
    ("post", "/api/v1/suppressions/", {"address": "a@example.com"}),
    ("delete", "/api/v1/suppressions/1/", None),
])
def test_a_read_only_key_gets_403_on_every_write(api_read, method, path, body):
    r = (getattr(api_read, method)(path) if body is None
         else getattr(api_read, method)(path, body))
    assert r.status_code == 403
    assert r.json() == {"detail": "This API key is read-only."}


def test_a_read_only_key_reads(api_read, alice_mail):
    for path in ("/api/v1/events/", "/api/v1/messages/", "/api/v1/logins/",
                 "/api/v1/suppressions/", f"/api/v1/messages/{alice_mail.queue_id}/"):
        assert api_read.get(path).status_code == 200, path


def test_last_used_is_recorded(api):
    assert ApiKey.objects.get(pk=api.key.pk).last_used is None
    api.get("/api/v1/events/")
    assert ApiKey.objects.get(pk=api.key.pk).last_used is not None


def test_only_the_sha256_digest_is_stored(api):
    key = ApiKey.objects.get(pk=api.key.pk)
    assert api.token.startswith("smtpeter_") and len(api.token) >= 9 + 43
    assert key.digest == apikeys.digest(api.token) and api.token not in key.digest
    assert key.prefix == api.token[:apikeys.PREFIX_SHOWN]


def test_the_rate_limit_is_per_key_with_retry_after(api, api_read, settings):
    settings.API_RATE_LIMIT = 3
    for _ in range(3):
        assert api.get("/api/v1/events/").status_code == 200
    r = api.get("/api/v1/events/")
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert api_read.get("/api/v1/events/").status_code == 200  # another key: its own budget


def test_creation_and_revocation_are_audited(alice, caplog):
    key, token = apikeys.create_key(alice, "deploy", "write", ip="192.0.2.1")
    assert apikeys.revoke_key(key, actor=alice, ip="192.0.2.2")
    assert not apikeys.revoke_key(key, actor=alice)  # once
    created, revoked = AuditEntry.objects.filter(owner=alice).order_by("id")
    assert created.action == "api_key_created" and created.ip == "192.0.2.1"
    assert created.details["api_key"]["name"] == "deploy"
    assert created.details["api_key"]["scope"] == "write"
    assert revoked.action == "api_key_revoked" and revoked.actor == alice
    assert token not in caplog.text and "api_key_revoked by alice" in caplog.text


# -- the dashboard page ------------------------------------------------------------------------

@pytest.fixture
def dashboard(client, alice):
    client.force_login(alice)
    return client


def _once(page) -> str:
    return re.search(rb'name="once" value="([^"]+)"', page.content).group(1).decode()


def test_the_page_creates_a_key_shown_once_and_a_reload_creates_nothing(dashboard, alice):
    page = dashboard.get("/api-keys/")
    assert page.status_code == 200 and b"No API keys yet" in page.content
    form = {"once": _once(page), "name": "billing", "scope": "write", "expires": ""}
    r = dashboard.post("/api-keys/", form)
    assert r.status_code == 200
    token = re.search(rb"smtpeter_[A-Za-z0-9_-]{43}", r.content).group(0).decode()
    key = ApiKey.objects.get(owner=alice)
    assert key.name == "billing" and key.scope == "write" and key.expires_at is None
    assert ApiClient(token).get("/api/v1/logins/").status_code == 200
    again = dashboard.post("/api-keys/", form)
    assert again.status_code == 302 and ApiKey.objects.filter(owner=alice).count() == 1
    listing = dashboard.get("/api-keys/")
    assert token.encode() not in listing.content and key.prefix.encode() in listing.content


def test_the_page_refuses_a_bad_form_with_400(dashboard, alice):
    page = dashboard.get("/api-keys/")
    r = dashboard.post("/api-keys/", {"once": _once(page), "name": "", "scope": "root",
                                      "expires": "2001-01-01"})
    assert r.status_code == 400
    assert ApiKey.objects.count() == 0
    assert b"Choose a day in the future" in r.content


def test_the_page_sets_an_expiry_and_revokes(dashboard, alice):
    page = dashboard.get("/api-keys/")
    day = (timezone.now() + timedelta(days=3)).date().isoformat()
    dashboard.post("/api-keys/", {"once": _once(page), "name": "temp", "scope": "read",
                                  "expires": day})
    key = ApiKey.objects.get(owner=alice)
    assert key.expires_at.date().isoformat() == day
    r = dashboard.post(f"/api-keys/{key.pk}/revoke/")
    assert r.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert b"revoked" in dashboard.get("/api-keys/").content


def test_another_owner_s_key_cannot_be_revoked(dashboard, bob):
    key, _ = apikeys.create_key(bob, "bob's", "write")
    assert dashboard.post(f"/api-keys/{key.pk}/revoke/").status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None
    assert b"bob&#x27;s" not in dashboard.get("/api-keys/").content


def test_the_page_needs_a_csrf_token(alice):
    c = Client(enforce_csrf_checks=True)
    c.force_login(alice)
    assert c.post("/api-keys/", {"name": "x", "scope": "read"}).status_code == 403
    key, _ = apikeys.create_key(alice, "k", "read")
    assert c.post(f"/api-keys/{key.pk}/revoke/").status_code == 403
    assert ApiKey.objects.count() == 1


def test_the_page_needs_a_signed_in_user(client):
    r = client.get("/api-keys/")
    assert r.status_code == 302 and "/signin/" in r["Location"]


def test_the_nav_links_the_page(dashboard):
    assert b'href="/api-keys/"' in dashboard.get("/").content
