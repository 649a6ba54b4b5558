"""The intake inside a real runsmtp (every role): mail submitted with a bouncetracking login is
delivered to the test sink under its VERP address; then a bounce, an ARF complaint and an
auto-reply come back to the mx port as a remote MTA sends them, and each becomes its event,
the recipient's state and the suppression entry."""
import smtplib

import pytest
from django.db import connection

from credentials import services
from events.models import Event
from relay.models import Message, Recipient, Suppression

from . import intake_samples as samples
from .conftest import SERVER_ENV
from .dnsserver import DNSServer
from .sink import Sink
from .smtp_helpers import HOST, Server
from .test_delivery_mx import ZONE, mx_env, submit, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
BOUNCE_DOMAIN = "bounces.test"  # as smtp_helpers.Server sets it


@pytest.fixture(scope="module")
def dns_server():
    with DNSServer(ZONE) as server:
        yield server


@pytest.fixture(scope="module")
def sink(tmp_path_factory):
    with Sink(starttls=True, dsn=True, cert_dir=tmp_path_factory.mktemp("sink")) as sink:
        yield sink


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, tls_files, tmp_path_factory, dns_server, sink):
    with django_db_blocker.unblock():
        connection.ensure_connection()
    server = Server(cert=tls_files[0], key=tls_files[1],
                    env_extra={**SERVER_ENV, **mx_env(dns_server, sink)},
                    workdir=tmp_path_factory.mktemp("runsmtp")).start()
    yield server
    server.stop()
    log = server.log_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]


def delivered_with_verp(server, sink, owner, address: str) -> tuple[Recipient, str]:
    """Submit to ``address`` with bouncetracking; the recipient once delivered, and the
    envelope sender the sink saw."""
    login, password = services.create_login(owner, features=["bouncetracking"])
    before = len(sink.received)
    [queue_id] = submit(server, login, password, [address], "tracked")
    recipient = wait_for(lambda: Recipient.objects.filter(
        message__queue_id=queue_id, state="delivered").first(), what="delivery")
    [tx] = wait_for(lambda: sink.received[before:], what="the sink's copy")
    verp = tx.mail_line.split("<", 1)[1].split(">", 1)[0]
    assert verp.endswith("@" + BOUNCE_DOMAIN) and verp.startswith("b")
    return recipient, verp


def send_back(server, to: str, data: bytes, mail_from: str = "") -> None:
    """As a remote MTA: plain SMTP to the mx port, null sender for reports."""
    with smtplib.SMTP(HOST, server.mx_port, timeout=10) as s:
        s.ehlo("mx.remote.test")
        s.sendmail(mail_from, [to], data)


def intake_read(to: str) -> Message:
    return wait_for(lambda: Message.objects.filter(
        kind="bounce", recipients__address__iexact=to, intake_done_at__isnull=False).first(),
        what="the intake")


def test_a_bounce_to_the_verp_address_becomes_a_hard_bounce_and_a_suppression(server, sink,
                                                                               alice):
    recipient, verp = delivered_with_verp(server, sink, alice, "gone@sink.test")
    send_back(server, verp, samples.dsn(verp, recipient.address))
    report = intake_read(verp)
    assert report.intake_outcome == "bounce"
    event = wait_for(lambda: Event.objects.filter(type="bounce", recipient=recipient).first(),
                     what="the bounce event")
    assert (event.data["class"], event.data["reason"], event.data["status"]) == (
        "hard", "invalid_recipient", "5.1.1")
    assert event.data["intake"] == report.queue_id
    recipient.refresh_from_db()
    assert recipient.state == "bounced"
    entry = Suppression.objects.get(owner=alice, address="gone@sink.test")
    assert (entry.reason, entry.event_id) == ("hard_bounce", event.pk)
    assert f"{report.queue_id}: intake read as bounce" in server.log_text()


def test_an_arf_report_to_fbl_becomes_a_complaint(server, sink, alice):
    recipient, verp = delivered_with_verp(server, sink, alice, "annoyed@sink.test")
    fbl = f"fbl@{BOUNCE_DOMAIN}"
    send_back(server, fbl, samples.arf(fbl, verp, recipient.address, "198.51.100.7"),
              mail_from="abuse@isp.example")
    event = wait_for(lambda: Event.objects.filter(type="complaint", recipient=recipient).first(),
                     what="the complaint event")
    assert (event.data["feedback_type"], event.data["source_ip"]) == ("abuse", "198.51.100.7")
    entry = Suppression.objects.get(owner=alice, address="annoyed@sink.test")
    assert (entry.reason, entry.expires_at) == ("complaint", None)


def test_an_auto_reply_becomes_a_response(server, sink, alice):
    recipient, verp = delivered_with_verp(server, sink, alice, "away@sink.test")
    send_back(server, verp, samples.auto_reply(verp, "away@sink.test"),
              mail_from="away@sink.test")
    event = wait_for(lambda: Event.objects.filter(type="response", recipient=recipient).first(),
                     what="the response event")
    assert event.data["subject"] == "Out of office: hello"
    recipient.refresh_from_db()
    assert recipient.state == "delivered"
    assert not Suppression.objects.filter(owner=alice, address="away@sink.test").exists()
