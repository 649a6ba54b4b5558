"""/api/v1/domains/: sender domains list, add (the records to publish), retrieve (records with
their status), check DNS against a DNS server the test starts, rotate, delete; only public key
material in any answer; another owner's domain is 404, a read-only key may not write, a
revoked key is 401; every change audited with the key."""
import pytest

from credentials import apikeys
from senders import keys, services
from senders.models import DkimKey, SenderAudit, SenderDomain
from tests.senders.conftest import dns_server, txt  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db


@pytest.fixture
def dns(dns_server, settings):  # noqa: F811
    settings.DNS_NAMESERVERS = dns_server.nameserver
    settings.SENDER_DNS_TIMEOUT = 2
    settings.SMTP_HOSTNAME = "relay.test"
    return dns_server


def no_private_key(response, domain: SenderDomain) -> bool:
    text = response.content.decode()
    return "PRIVATE" not in text and all(
        keys.unseal(k.private_key, domain.domain, k.selector).decode() not in text
        and bytes(k.private_key).hex() not in text for k in domain.keys.all())


def by_kind(body: dict) -> dict:
    return {(r["kind"], r["selector"]): r for r in body["records"]}


def test_add_returns_the_records_to_publish(api, alice, settings):
    settings.SMTP_HOSTNAME = "relay.test"
    r = api.post("/api/v1/domains/", {"domain": "Shop.TEST", "ed25519": True})
    assert r.status_code == 201, r.content
    body = r.json()
    domain = SenderDomain.objects.get(pk=body["id"], owner=alice)
    assert body["domain"] == "shop.test" and body["verified"] is False
    assert body["checked_at"] is None
    rsa = domain.keys.get(algorithm=DkimKey.Algorithm.RSA)
    ed = domain.keys.get(algorithm=DkimKey.Algorithm.ED25519)
    records = by_kind(body)
    dkim = records[("dkim", rsa.selector)]
    assert dkim["name"] == f"{rsa.selector}._domainkey.shop.test" and dkim["type"] == "TXT"
    assert dkim["value"] == keys.txt_value(rsa.algorithm, rsa.public_key)
    assert dkim["status"] == "unchecked" and dkim["key_state"] == "active"
    assert "k=ed25519" in records[("dkim", ed.selector)]["value"]
    spf = records[("spf", "")]
    assert spf["value"] == "a:relay.test" and spf["example"] == "v=spf1 a:relay.test ~all"
    assert records[("dmarc", "")]["name"] == "_dmarc.shop.test"
    assert no_private_key(r, domain)
    entry = SenderAudit.objects.get()
    assert (entry.action, entry.actor, entry.details["api_key"]["id"]) == (
        "added", alice, api.key.pk)
    listed = api.get("/api/v1/domains/")
    assert [d["id"] for d in listed.json()["results"]] == [domain.pk]
    assert no_private_key(listed, domain)
    assert api.get(f"/api/v1/domains/{domain.pk}/").json() == body


@pytest.mark.parametrize("body", [{"domain": "not a domain"}, {"domain": "localhost"}, {},
                                  {"domain": "shop.test", "ed25519": "perhaps"}])
def test_bad_domains_are_400(api, body):
    r = api.post("/api/v1/domains/", body)
    assert r.status_code == 400 and set(r.json()) <= {"domain", "ed25519"} and r.json()
    assert not SenderDomain.objects.exists()


def test_a_domain_twice_is_400(api, alice):
    services.add_domain(alice, "shop.test")
    r = api.post("/api/v1/domains/", {"domain": "shop.test"})
    assert r.status_code == 400 and "already" in r.json()["domain"][0]


def test_check_dns_right_missing_and_wrong_then_verified(api, alice, dns):
    domain = services.add_domain(alice, "shop.test")
    key = domain.keys.get()
    dns.set(f"{key.selector}._domainkey.shop.test",
            {"TXT": [txt(keys.txt_value(key.algorithm, key.public_key))]})
    dns.set("shop.test", {"TXT": [["v=spf1 mx -all"]]})
    r = api.post(f"/api/v1/domains/{domain.pk}/check/")
    assert r.status_code == 200, r.content
    body = r.json()
    records = by_kind(body)
    assert records[("dkim", key.selector)]["status"] == "right"
    assert records[("spf", "")]["status"] == "wrong"
    assert records[("spf", "")]["found"] == ["v=spf1 mx -all"]
    assert records[("dmarc", "")]["status"] == "missing"
    assert body["verified"] is True and body["checked_at"] is not None
    assert api.get(f"/api/v1/domains/{domain.pk}/").json()["records"] == body["records"]
    actions = [e.action for e in SenderAudit.objects.order_by("id")]
    assert actions == ["added", "verified"]
    assert SenderAudit.objects.get(action="verified").details["api_key"]["id"] == api.key.pk


def test_rotate_adds_a_next_key_to_publish(api, alice):
    domain = services.add_domain(alice, "shop.test")
    r = api.post(f"/api/v1/domains/{domain.pk}/rotate/")
    assert r.status_code == 200, r.content
    nxt = domain.keys.get(state=DkimKey.State.NEXT)
    record = by_kind(r.json())[("dkim", nxt.selector)]
    assert record["key_state"] == "next"
    assert record["value"] == keys.txt_value(nxt.algorithm, nxt.public_key)
    assert no_private_key(r, domain)
    # A second rotation while one waits makes nothing.
    assert api.post(f"/api/v1/domains/{domain.pk}/rotate/").status_code == 200
    assert domain.keys.count() == 2
    assert SenderAudit.objects.filter(action="rotation_started").count() == 1


def test_delete(api, alice):
    domain = services.add_domain(alice, "shop.test")
    assert api.delete(f"/api/v1/domains/{domain.pk}/").status_code == 204
    assert not SenderDomain.objects.exists() and not DkimKey.objects.exists()
    entry = SenderAudit.objects.get(action="deleted")
    assert entry.details["api_key"]["id"] == api.key.pk
    assert api.delete(f"/api/v1/domains/{domain.pk}/").status_code == 404


@pytest.mark.parametrize("method,suffix", [
    ("get", ""), ("delete", ""), ("post", "check/"), ("post", "rotate/"),
])
def test_another_owner_s_domain_is_404(api, bob, method, suffix):
    theirs = services.add_domain(bob, "bob.test")
    r = getattr(api, method)(f"/api/v1/domains/{theirs.pk}/{suffix}")
    assert r.status_code == 404 and r.json() == {"detail": "No such sender domain."}
    assert api.get("/api/v1/domains/").json()["results"] == []
    assert theirs.keys.count() == 1 and SenderAudit.objects.count() == 1
    theirs.refresh_from_db()
    assert theirs.checked_at is None


@pytest.mark.parametrize("method,suffix", [
    ("post", ""), ("delete", "{id}/"), ("post", "{id}/check/"), ("post", "{id}/rotate/"),
])
def test_a_read_only_key_may_not_write(api_read, alice, method, suffix):
    domain = services.add_domain(alice, "shop.test")
    path = "/api/v1/domains/" + suffix.format(id=domain.pk)
    args = [{"domain": "other.test"}] if method == "post" else []
    r = getattr(api_read, method)(path, *args)
    assert r.status_code == 403 and r.json() == {"detail": "This API key is read-only."}
    assert api_read.get(f"/api/v1/domains/{domain.pk}/").status_code == 200
    assert SenderDomain.objects.count() == 1 and domain.keys.count() == 1
    assert SenderAudit.objects.count() == 1


def test_a_revoked_key_is_401(api, alice):
    domain = services.add_domain(alice, "shop.test")
    apikeys.revoke_key(api.key, actor=alice)
    assert api.get(f"/api/v1/domains/{domain.pk}/").status_code == 401
    assert api.post(f"/api/v1/domains/{domain.pk}/rotate/").status_code == 401
    assert domain.keys.count() == 1
