"""DKIM end to end: a real runsmtp (capture mode) takes mail over TLS with AUTH; what it would
have sent verifies, with dkimpy and with Mail::DKIM against the test DNS server, as a pass for a
domain aligned with From when the domain is verified; other mail is signed as the relay and
says so on its page; DSNs are signed as the relay."""
import email.utils
import smtplib

import pytest
from django.db import connection

from credentials import services as logins
from events.models import Event
from relay.models import Capture, Message
from senders import keys, services
from tests.relay.conftest import tls_files as tls_files  # the fixture
from tests.relay.smtp_helpers import HOST, Server
from tests.relay.test_delivery import CAPTURE_ENV, wait_for

from .conftest import txt
from .verify import dkimpy_results, perl_results

pytestmark = pytest.mark.django_db(transaction=True)
HTML = ("From: Shop News <news@mail.shop.test>\r\nTo: bob@example.org\r\n"
        "Subject: offer\r\nDate: {date}\r\nMessage-ID: <{n}@shop.test>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "DKIM-Signature: v=1; a=rsa-sha256; d=shop.test; s=app; bh=x; b=y\r\n\r\n"
        '<p>Read <a href="https://shop.test/offer">the offer</a></p>\r\n')


@pytest.fixture(scope="module")
def relay_key(tmp_path_factory):
    path = tmp_path_factory.mktemp("dkim") / "relay.pem"
    private, public = keys.generate("rsa-sha256")
    path.write_bytes(private)
    return path, keys.txt_value("rsa-sha256", public)


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, tls_files, tmp_path_factory, dns_server,  # noqa: F811
           relay_key):
    dns_server.set("smtpeter._domainkey.relay.test", {"TXT": [txt(relay_key[1])]})
    with django_db_blocker.unblock():
        connection.ensure_connection()
    server = Server(cert=tls_files[0], key=tls_files[1], workdir=tmp_path_factory.mktemp("r"),
                    env_extra={**CAPTURE_ENV, "DKIM_RELAY_KEY_FILE": str(relay_key[0]),
                               "DKIM_RELAY_DOMAIN": "relay.test"}).start()
    yield server
    server.stop()
    log = server.log_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]


def send(server, login, password, body: bytes, recipients, options=()) -> Message:
    with smtplib.SMTP_SSL(HOST, server.tls_port, context=server.client_context()) as s:
        s.login(login.username, password)
        s.mail("app@shop.test", list(options))
        for r in recipients:
            assert s.rcpt(*r if isinstance(r, tuple) else (r,))[0] == 250
        code, reply = s.data(body)
        assert code == 250, reply
    return Message.objects.get(queue_id=reply.decode().rsplit(" ", 1)[1])


def body(n: int) -> bytes:
    return HTML.format(date=email.utils.formatdate(), n=n).encode()


def verified_domain(owner, dns_server, settings, name="shop.test", ed25519=False):
    settings.DNS_NAMESERVERS = dns_server.nameserver
    domain = services.add_domain(owner, name, ed25519=ed25519)
    for key in domain.keys.all():
        dns_server.set(f"{key.selector}._domainkey.{name}",
                       {"TXT": [txt(keys.txt_value(key.algorithm, key.public_key))]})
    services.check_domain(domain)
    assert domain.verified_at is not None
    return domain


def test_mail_from_a_verified_domain_is_signed_aligned_and_verifies(server, dns_server, alice,
                                                                    settings):
    verified_domain(alice, dns_server, settings, ed25519=True)
    login, password = logins.create_login(alice, features=["clicktracking", "openstracking"])
    message = send(server, login, password, body(1), ["bob@example.org", "carol@example.org"])
    captures = wait_for(lambda: (list(Capture.objects.filter(message=message))
                                 if Capture.objects.filter(message=message).count() == 2
                                 else None), what="both captures")
    datas = [bytes(c.data) for c in captures]
    assert datas[0] != datas[1]  # tracking tokens differ per recipient: each signed alone
    for data in datas:
        assert b"s=app" not in data  # the customer's signature, broken by rendering, is gone
        assert b"https://t.test/t/" in data  # signed after rendering
        # Both signatures (RSA and Ed25519) by shop.test, the organisational domain of From.
        assert dkimpy_results(data, dns_server.nameserver) == [("shop.test", True)] * 2
        overall, sigs = perl_results(data, dns_server.nameserver)
        assert overall == "pass" and ["shop.test", "pass"] in [[s[0], s[3]] for s in sigs]
        tampered = data.replace(b"the offer", b"the 0ffer")
        assert dkimpy_results(tampered, dns_server.nameserver) == [("shop.test", False)] * 2
        assert perl_results(tampered, dns_server.nameserver)[0] == "fail"
    assert not Event.objects.filter(message=message, type="warning").exists()


def test_mail_from_an_unverified_domain_is_signed_as_the_relay_with_a_warning(
        server, dns_server, bob, client):
    login, password = logins.create_login(bob)  # no features: the unrendered path
    message = send(server, login, password, body(2), ["dave@example.org"])
    capture = wait_for(lambda: Capture.objects.filter(message=message).first(), what="capture")
    data = bytes(capture.data)
    assert dkimpy_results(data, dns_server.nameserver) == [("relay.test", True)]
    assert perl_results(data, dns_server.nameserver)[0] == "pass"
    [warning] = Event.objects.filter(message=message, type="warning")
    assert "mail.shop.test is not a verified sender domain" in warning.data["reason"]
    client.force_login(bob)
    page = client.get(f"/messages/{message.queue_id}/").content.decode()
    assert "not aligned with From" in page


def test_a_dsn_is_signed_as_the_relay(server, dns_server, alice, settings):
    login, password = logins.create_login(alice)
    message = send(server, login, password, body(3), [("erin@example.org", ["NOTIFY=SUCCESS"])])
    capture = wait_for(lambda: Capture.objects.filter(message__dsn_of=message).first(),
                       what="the DSN")
    data = bytes(capture.data)
    assert b"From: Mail Delivery System <MAILER-DAEMON@relay.test>" in data
    assert dkimpy_results(data, dns_server.nameserver) == [("relay.test", True)]
    assert perl_results(data, dns_server.nameserver)[0] == "pass"
    assert not Event.objects.filter(message=capture.message, type="warning").exists()


@pytest.fixture(scope="module")
def refusing_server(django_db_setup, django_db_blocker, tls_files, tmp_path_factory,  # noqa: F811
                    relay_key):
    with django_db_blocker.unblock():
        connection.ensure_connection()
    server = Server(cert=tls_files[0], key=tls_files[1], workdir=tmp_path_factory.mktemp("r"),
                    env_extra={**CAPTURE_ENV, "DKIM_RELAY_KEY_FILE": str(relay_key[0]),
                               "SENDER_UNVERIFIED": "refuse"}).start()
    yield server
    server.stop()
    log = server.log_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]


def test_refuse_mode_answers_550_naming_the_domain_and_takes_verified_mail(
        refusing_server, dns_server, alice, settings):
    login, password = logins.create_login(alice)
    with smtplib.SMTP_SSL(HOST, refusing_server.tls_port,
                          context=refusing_server.client_context()) as s:
        s.login(login.username, password)
        s.mail("app@shop.test")
        s.rcpt("bob@example.org")
        code, reply = s.data(body(4))
        assert (code, reply.decode()) == (550, "5.7.1 From domain mail.shop.test is not a "
                                               "verified sender domain of this account: add and "
                                               "verify mail.shop.test (or a parent domain) under "
                                               "Sender domains")
        s.mail("app@shop.test")
        s.rcpt("bob@example.org")
        code, reply = s.data(b"Subject: no from\r\n\r\nhi\r\n")
        assert code == 550 and b"No From address" in reply
    assert not Message.objects.filter(owner=alice).exists()
    assert "DATA refused from 127.0.0.1: 550 5.7.1 From domain mail.shop.test" in \
        refusing_server.log_text()

    verified_domain(alice, dns_server, settings, name="shop.test")
    message = send(refusing_server, login, password, body(5), ["bob@example.org"])
    capture = wait_for(lambda: Capture.objects.filter(message=message).first(), what="capture")
    assert dkimpy_results(bytes(capture.data), dns_server.nameserver) == [("shop.test", True)]


@pytest.mark.parametrize("features", [[], ["clicktracking"]],
                         ids=["unrendered: a signing job", "rendered: in the render job"])
def test_mail_that_cannot_be_signed_goes_out_unsigned_and_says_why(server, refusing_server, bob,
                                                                   features):
    login, password = logins.create_login(bob, features=features)
    message = send(server, login, password,
                   b"Subject: no From header\r\n\r\n<a href=\"https://shop.test/\">hi</a>\r\n",
                   ["frank@example.org"])
    capture = wait_for(lambda: Capture.objects.filter(message=message).first(), what="capture")
    assert b"DKIM-Signature" not in bytes(capture.data)
    [warning] = Event.objects.filter(message=message, type="warning")
    assert warning.data == {"reason": "DKIM signing failed (SigningError: no From header)",
                            "action": "sent unsigned"}
    # On PostgreSQL the module's other runsmtp delivers from the same queue: either may log it.
    assert f"{message.queue_id}: DKIM signing failed (SigningError: no From header); sent " \
           "unsigned" in server.log_text() + refusing_server.log_text()
