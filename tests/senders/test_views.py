"""The sender-domain pages: add, records and their status, Check DNS, rotate, delete; another
owner's domain is 404 on every URL; forms need their CSRF token; changes are audited."""
import pytest
from django.test import Client

from senders import keys, services
from senders.models import DkimKey, SenderAudit, SenderDomain

from .conftest import txt

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_client(alice):
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def dns(dns_server, settings):
    settings.DNS_NAMESERVERS = dns_server.nameserver
    settings.SENDER_DNS_TIMEOUT = 2
    settings.SMTP_HOSTNAME = "relay.test"
    return dns_server


def test_adding_a_domain_shows_its_records_before_any_check(alice_client, alice):
    page = alice_client.get("/domains/")
    assert page.status_code == 200 and "Add a domain" in page.content.decode()
    response = alice_client.post("/domains/", {"domain": "Shop.TEST", "ed25519": "on"})
    domain = SenderDomain.objects.get(owner=alice)
    assert response.status_code == 302 and response["Location"] == f"/domains/{domain.pk}/"
    html = alice_client.get(response["Location"]).content.decode()
    rsa = domain.keys.get(algorithm=DkimKey.Algorithm.RSA)
    assert f"{rsa.selector}._domainkey.shop.test" in html
    assert keys.txt_value(rsa.algorithm, rsa.public_key) in html
    assert "k=ed25519" in html
    assert "v=spf1 a:" in html and "_dmarc.shop.test" in html and "v=DMARC1; p=none" in html
    assert "not verified" in html and "not checked" in html
    assert "PRIVATE" not in html
    assert "bouncetracking" in html  # the alignment explanation
    [entry] = SenderAudit.objects.all()
    assert (entry.action, entry.actor, entry.ip) == ("added", alice, "127.0.0.1")


def test_a_bad_or_repeated_domain_is_refused_with_400(alice_client, alice):
    assert alice_client.post("/domains/", {"domain": "not a domain"}).status_code == 400
    services.add_domain(alice, "shop.test")
    response = alice_client.post("/domains/", {"domain": "shop.test"})
    assert response.status_code == 400 and "already" in response.content.decode()
    assert SenderDomain.objects.count() == 1


def test_check_dns_shows_right_missing_and_wrong(alice_client, alice, dns):
    domain = services.add_domain(alice, "shop.test")
    key = domain.keys.get()
    dns.set(f"{key.selector}._domainkey.shop.test",
            {"TXT": [txt(keys.txt_value(key.algorithm, key.public_key))]})
    dns.set("shop.test", {"TXT": [["v=spf1 mx -all"]]})
    response = alice_client.post(f"/domains/{domain.pk}/check/")
    assert response.status_code == 302
    html = alice_client.get(f"/domains/{domain.pk}/").content.decode()
    assert 'data-kind="dkim" data-status="right"' in html
    assert 'data-kind="spf" data-status="wrong"' in html and "add a:relay.test" in html
    assert 'data-kind="dmarc" data-status="missing"' in html
    assert "is verified" in html or "verified</span> since" in html
    domain.refresh_from_db()
    assert domain.verified_at is not None


def test_rotation_from_the_page(alice_client, alice):
    domain = services.add_domain(alice, "shop.test")
    assert alice_client.post(f"/domains/{domain.pk}/rotate/").status_code == 302
    assert domain.keys.filter(state=DkimKey.State.NEXT).count() == 1
    html = alice_client.get(f"/domains/{domain.pk}/").content.decode()
    assert "published next" in html


def test_delete_asks_then_deletes(alice_client, alice):
    domain = services.add_domain(alice, "shop.test")
    assert "Delete <code>shop.test</code>?" in alice_client.get(
        f"/domains/{domain.pk}/delete/").content.decode()
    assert alice_client.post(f"/domains/{domain.pk}/delete/").status_code == 302
    assert not SenderDomain.objects.exists() and not DkimKey.objects.exists()
    assert SenderAudit.objects.filter(action="deleted", domain="shop.test").exists()


@pytest.mark.parametrize(("method", "path"), [
    ("get", ""), ("post", "check/"), ("post", "rotate/"), ("get", "delete/"),
    ("post", "delete/"),
])
def test_another_owners_domain_is_404(bob, alice, method, path):
    domain = services.add_domain(alice, "shop.test")
    client = Client()
    client.force_login(bob)
    response = getattr(client, method)(f"/domains/{domain.pk}/{path}")
    assert response.status_code == 404
    assert SenderDomain.objects.filter(pk=domain.pk).exists()
    assert domain.keys.count() == 1 and SenderAudit.objects.count() == 1


def test_the_pages_need_a_sign_in():
    response = Client().get("/domains/")
    assert response.status_code == 302 and "/signin/" in response["Location"]


@pytest.mark.parametrize("path", ["", "{pk}/check/", "{pk}/rotate/", "{pk}/delete/"])
def test_forms_need_their_csrf_token(alice, path):
    domain = services.add_domain(alice, "shop.test")
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(f"/domains/{path.format(pk=domain.pk)}", {"domain": "x.test"})
    assert response.status_code == 403
    assert SenderDomain.objects.count() == 1 and domain.keys.count() == 1


def test_staff_read_domains_and_their_audit_in_the_admin_without_keys(admin_client, alice):
    domain = services.add_domain(alice, "shop.test")
    for url in ("/admin/senders/senderdomain/", f"/admin/senders/senderdomain/{domain.pk}/change/",
                "/admin/senders/senderaudit/"):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert "shop.test" in response.content.decode()
        assert "private" not in response.content.decode().lower()
    assert admin_client.get("/admin/senders/senderaudit/add/").status_code == 403
