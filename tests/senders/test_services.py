"""senders.services: domains, keys at rest, the check that verifies and lapses a domain,
rotation with its grace period, the periodic re-check, and who signs what."""
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from senders import keys, services
from senders.dkim import ED25519, RSA
from senders.dnscheck import MISSING, RIGHT, WRONG
from senders.models import DkimKey, SenderAudit

from .conftest import txt

pytestmark = pytest.mark.django_db


@pytest.fixture
def dns(dns_server, settings):
    settings.DNS_NAMESERVERS = dns_server.nameserver
    settings.SENDER_DNS_TIMEOUT = 2
    settings.SMTP_HOSTNAME = "relay.test"
    return dns_server


def publish(dns_server, domain, *, spf=True, dmarc=True):
    for key in domain.keys.all():
        dns_server.set(f"{key.selector}._domainkey.{domain.domain}",
                       {"TXT": [txt(keys.txt_value(key.algorithm, key.public_key))]})
    if spf:
        dns_server.set(domain.domain, {"TXT": [["v=spf1 a:relay.test -all"]]})
    if dmarc:
        dns_server.set(f"_dmarc.{domain.domain}", {"TXT": [["v=DMARC1; p=none"]]})


@pytest.mark.parametrize(("text", "stored"), [
    ("Shop.Example.COM.", "shop.example.com"), ("news@example.org", "example.org"),
    ("bücher.example", "xn--bcher-kva.example"),
])
def test_domains_are_stored_lower_case_in_a_labels(alice, text, stored):
    assert services.add_domain(alice, text).domain == stored


@pytest.mark.parametrize("text", ["localhost", "a..b", "-a.test", "1.2.3.4", "x" * 64 + ".test",
                                  "exa mple.com", ""])
def test_names_that_are_not_domains_are_refused(alice, text):
    with pytest.raises(services.DomainError, match="not a domain name"):
        services.add_domain(alice, text)


def test_a_domain_twice_is_refused_but_two_owners_may_have_it(alice, bob):
    services.add_domain(alice, "shop.test")
    with pytest.raises(services.DomainError, match="already"):
        services.add_domain(alice, "SHOP.test")
    services.add_domain(bob, "shop.test")


def test_keys_are_made_and_the_private_half_is_encrypted_at_rest(alice):
    domain = services.add_domain(alice, "shop.test", ed25519=True, actor=alice, ip="192.0.2.1")
    rsa, ed = sorted(domain.keys.all(), key=lambda k: k.algorithm != RSA)
    assert (rsa.algorithm, ed.algorithm) == (RSA, ED25519)
    assert rsa.state == ed.state == DkimKey.State.ACTIVE and rsa.selector != ed.selector
    with connection.cursor() as c:
        c.execute("SELECT private_key FROM senders_dkimkey WHERE id = %s", [rsa.pk])
        stored = bytes(c.fetchone()[0])
    assert b"PRIVATE KEY" not in stored
    private = keys.unseal(stored, "shop.test", rsa.selector)
    assert private.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert keys.public_of(private) == rsa.public_key
    with pytest.raises(keys.KeyUnreadable):  # bound to its row: another selector cannot use it
        keys.unseal(stored, "shop.test", ed.selector)
    [entry] = SenderAudit.objects.all()
    assert (entry.action, entry.domain, entry.actor, entry.ip) == ("added", "shop.test", alice,
                                                                  "192.0.2.1")


def test_a_changed_secret_makes_stored_keys_unreadable_not_wrong(alice, settings):
    domain = services.add_domain(alice, "shop.test")
    key = domain.keys.get()
    settings.SENDER_KEY_SECRET = "another secret"
    with pytest.raises(keys.KeyUnreadable):
        keys.unseal(key.private_key, "shop.test", key.selector)


def test_the_check_verifies_a_domain_and_lapses_it_when_the_record_goes(alice, dns):
    domain = services.add_domain(alice, "shop.test")
    found = services.check_domain(domain)
    assert {f.kind: f.status for f in found} == {"dkim": MISSING, "spf": MISSING,
                                                 "dmarc": MISSING}
    assert domain.verified_at is None and services.signers_for(alice.pk, "shop.test") is None

    publish(dns, domain)
    found = services.check_domain(domain)
    assert {f.kind: f.status for f in found} == {"dkim": RIGHT, "spf": RIGHT, "dmarc": RIGHT}
    assert domain.verified_at is not None and domain.last_check["records"][0]["status"] == RIGHT
    name, signers = services.signers_for(alice.pk, "news.shop.test")  # a parent signs
    assert name == "shop.test" and [s.selector for s in signers] == [domain.keys.get().selector]
    assert services.signers_for(alice.pk, "othershop.test") is None

    key = domain.keys.get()
    dns.set(f"{key.selector}._domainkey.shop.test", {"TXT": [["v=DKIM1; k=rsa; p=AAAA"]]})
    found = services.check_domain(domain)
    assert found[0].status == WRONG
    assert domain.verified_at is None and domain.lapsed_at is not None
    assert services.signers_for(alice.pk, "shop.test") is None
    assert list(SenderAudit.objects.values_list("action", flat=True)) == [
        "lapsed", "verified", "added"]


def test_signers_are_only_the_owners(alice, bob, dns):
    domain = services.add_domain(alice, "shop.test")
    publish(dns, domain)
    services.check_domain(domain)
    assert services.signers_for(bob.pk, "shop.test") is None
    assert services.signers_for(None, "shop.test") is None


def test_rotation_signs_with_the_new_key_once_published_and_retires_the_old(alice, dns,
                                                                             settings):
    settings.SENDER_ROTATION_GRACE_DAYS = 7
    domain = services.add_domain(alice, "shop.test")
    publish(dns, domain)
    services.check_domain(domain)
    old = domain.keys.get()
    [new] = services.rotate(domain, actor=alice)
    assert services.rotate(domain, actor=alice) == []  # one rotation at a time
    assert new.state == DkimKey.State.NEXT and new.selector != old.selector
    services.check_domain(domain)  # the new record is not published yet: nothing changes
    assert services.signers_for(alice.pk, "shop.test")[1][0].selector == old.selector

    publish(dns, domain)
    services.check_domain(domain)
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.state, new.state) == (DkimKey.State.RETIRING, DkimKey.State.ACTIVE)
    assert old.retire_at > timezone.now() + timedelta(days=6)
    assert services.signers_for(alice.pk, "shop.test")[1][0].selector == new.selector
    assert domain.verified_at is not None

    DkimKey.objects.filter(pk=old.pk).update(retire_at=timezone.now())
    services.check_domain(domain)
    assert list(domain.keys.values_list("selector", flat=True)) == [new.selector]
    assert set(SenderAudit.objects.values_list("action", flat=True)) >= {
        "rotation_started", "rotated", "key_retired"}


def test_checksenders_rechecks_due_domains(alice, dns, capsys):
    fresh = services.add_domain(alice, "fresh.test")
    stale = services.add_domain(alice, "stale.test")
    publish(dns, fresh)
    publish(dns, stale)
    services.check_domain(fresh)
    services.check_domain(stale)
    type(stale).objects.filter(pk=stale.pk).update(
        checked_at=timezone.now() - timedelta(days=2))
    dns.resolver.zone.pop(f"{stale.keys.get().selector}._domainkey.stale.test")
    call_command("checksenders")
    assert "checked 1 domain(s): 0 verified, 1 stopped verifying" in capsys.readouterr().out
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.verified_at is None and fresh.verified_at is not None


def test_the_relay_key_is_made_once_and_its_record_printed(settings, tmp_path, capsys):
    settings.DKIM_RELAY_KEY_FILE = str(tmp_path / "dkim" / "relay.pem")
    settings.DKIM_RELAY_DOMAIN, settings.DKIM_RELAY_SELECTOR = "relay.test", "sel"
    call_command("dkimrelaykey")
    out = capsys.readouterr().out
    assert "Wrote" in out and 'sel._domainkey.relay.test. IN TXT "v=DKIM1; k=rsa; p=' in out
    assert (tmp_path / "dkim" / "relay.pem").stat().st_mode & 0o777 == 0o600
    signer = services.relay_signer()
    call_command("dkimrelaykey")
    assert "Wrote" not in capsys.readouterr().out
    assert services.relay_signer() == signer


def test_an_unreadable_key_is_skipped_with_a_log_line(alice, dns, settings, caplog):
    domain = services.add_domain(alice, "shop.test")
    publish(dns, domain)
    services.check_domain(domain)
    settings.SENDER_KEY_SECRET = "not the secret the key was sealed under"
    assert services.signers_for(alice.pk, "shop.test") is None
    assert "unreadable (does not decrypt under the current key secret)" in caplog.text
