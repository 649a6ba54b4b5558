"""Delivery in mx mode inside a real runsmtp: mail submitted over TLS with AUTH goes through the
test DNS server's MX records to the scriptable sink (both on 127.0.0.1, the sink on
SMTP_OUT_PORT), and every outcome is stored: Attempt rows, events, the recipient's last reply.
Also: the next MX after a dead one, routing errors, connection reuse within the
per-destination limit (the kill -9 test is in test_delivery_mx_kill.py)."""
import smtplib
import time

import pytest
from django.db import connection

from credentials import services
from events.models import Event
from relay.models import Attempt, Recipient

from .conftest import SERVER_ENV
from .dnsserver import SERVFAIL, DNSServer
from .sink import Sink
from .smtp_helpers import HOST, Server

pytestmark = pytest.mark.django_db(transaction=True)
ZONE = {
    "sink.test": {"MX": [(10, "mx.sink.test")]},
    "mx.sink.test": {"A": ["127.0.0.1"]},
    "multi.test": {"MX": [(10, "dead.multi.test"), (20, "mx.multi.test")]},
    "dead.multi.test": {"A": ["127.0.0.2"]},  # nothing listens there: refused
    "mx.multi.test": {"A": ["127.0.0.1"]},
    "nullmx.test": {"MX": [(0, ".")]},
    "broken.test": SERVFAIL,
    "busy.test": {"MX": [(10, "mx.sink.test")]},
}
LIMIT = 2  # DELIVERY_DESTINATION_CONCURRENCY here
BODY = b"Subject: %s\r\nFrom: app@example.com\r\n\r\nHello.\r\n"


@pytest.fixture(scope="module")
def dns_server():
    with DNSServer(ZONE) as server:
        yield server


@pytest.fixture(scope="module")
def sink(tmp_path_factory):
    with Sink(starttls=True, dsn=True, cert_dir=tmp_path_factory.mktemp("sink")) as sink:
        yield sink


def mx_env(dns_server, sink, **extra) -> dict:
    return {**SERVER_ENV, "DELIVERY_MODE": "mx", "DNS_NAMESERVERS": dns_server.nameserver,
            "DELIVERY_ALLOW_PRIVATE": "true", "SMTP_OUT_PORT": str(sink.port),
            "DELIVERY_DESTINATION_CONCURRENCY": str(LIMIT), "DELIVERY_CONNECTION_IDLE": "2",
            "SMTP_OUT_CONNECT_TIMEOUT": "5", "SMTP_OUT_MAIL_TIMEOUT": "10",
            "SMTP_OUT_RCPT_TIMEOUT": "10", "SMTP_OUT_DATA_DONE_TIMEOUT": "10", **extra}


@pytest.fixture(scope="module")
def mx_server(django_db_setup, django_db_blocker, tls_files, tmp_path_factory, dns_server,
              sink):
    with django_db_blocker.unblock():
        connection.ensure_connection()
    server = Server(cert=tls_files[0], key=tls_files[1], env_extra=mx_env(dns_server, sink),
                    workdir=tmp_path_factory.mktemp("runsmtp")).start()
    yield server
    server.stop()
    log = server.log_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]


def submit(server, login, password, recipients, subject="hello", count=1, mail_options=(),
           rcpt_options=()) -> list[str]:
    ids = []
    with smtplib.SMTP_SSL(HOST, server.tls_port, context=server.client_context()) as s:
        s.login(login.username, password)
        for n in range(count):
            assert s.mail("app@example.com", list(mail_options))[0] == 250
            for r in recipients:
                assert s.rcpt(r, list(rcpt_options))[0] == 250
            code, reply = s.data(BODY % (subject if count == 1 else f"{subject} {n}").encode())
            assert code == 250, reply
            ids.append(reply.decode().rsplit(" ", 1)[1])
    return ids


def wait_for(check, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def settled(queue_ids) -> bool:
    rcpts = Recipient.objects.filter(message__queue_id__in=queue_ids)
    return rcpts.exists() and not rcpts.filter(state="queued").exists() and not rcpts.exclude(
        leased_by="").exists()


def states(queue_ids) -> dict[str, str]:
    return dict(Recipient.objects.filter(message__queue_id__in=queue_ids)
                .values_list("address", "state"))


def test_submitted_mail_is_delivered_to_the_mx_with_its_dsn_parameters(mx_server, sink, alice):
    login, password = services.create_login(alice)
    before = len(sink.received)
    [queue_id] = submit(mx_server, login, password, ["ok@sink.test"], "e2e",
                        mail_options=["RET=HDRS", "ENVID=Env+2B1"],
                        rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;Ok+2Bx@sink.test"])
    wait_for(lambda: settled([queue_id]), what="delivery")
    assert states([queue_id]) == {"ok@sink.test": "delivered"}
    [tx] = sink.received[before:]
    assert tx.mail_line == "MAIL FROM:<app@example.com> RET=HDRS ENVID=Env+2B1"
    assert tx.rcpt_lines == [
        "RCPT TO:<ok@sink.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Ok+2Bx@sink.test"]
    assert tx.tls and b"Subject: e2e\r\n" in tx.data
    # Our Received line on top, under the relay's DKIM signature (From is not a verified
    # sender domain here; tests/senders check the signatures).
    assert tx.data.startswith(b"DKIM-Signature: ") and b"\r\nReceived: " in tx.data
    recipient = Recipient.objects.get(message__queue_id=queue_id)
    [attempt] = Attempt.objects.filter(recipient=recipient)
    assert (attempt.outcome, attempt.host, attempt.ip, attempt.port, attempt.code,
            attempt.enhanced) == ("delivered", "mx.sink.test", "127.0.0.1", sink.port, 250,
                                  "2.0.0")
    assert attempt.tls_version.startswith("TLSv1.") and attempt.tls_cipher
    assert "queued as" in attempt.text
    [event] = Event.objects.filter(recipient=recipient)
    assert (event.type, event.data["code"], event.data["host"]) == ("delivery", 250,
                                                                    "mx.sink.test")
    assert recipient.last_response.startswith("250 2.0.0 Ok: queued as")
    assert f"{queue_id}: to=<ok@sink.test>" in mx_server.log_text()


def test_each_reply_of_the_sink_is_an_outcome_that_says_why(mx_server, sink, alice, client):
    login, password = services.create_login(alice)
    submitted = time.time()
    [mixed] = submit(mx_server, login, password, ["ok-m@sink.test", "tempfail-m@sink.test",
                                                  "reject-m@sink.test", "slow1-m@sink.test"])
    [dropped] = submit(mx_server, login, password, ["drop-m@sink.test"])
    wait_for(lambda: settled([mixed, dropped]), what="outcomes")
    assert states([mixed, dropped]) == {
        "ok-m@sink.test": "delivered", "slow1-m@sink.test": "delivered",
        "tempfail-m@sink.test": "deferred", "reject-m@sink.test": "failed",
        "drop-m@sink.test": "deferred"}

    busy = Recipient.objects.get(address="tempfail-m@sink.test")
    assert (busy.last_code, busy.last_enhanced) == (451, "4.2.0")
    assert busy.last_response == "451 4.2.0 Mailbox busy, try later"
    wait = (busy.next_attempt_at.timestamp() - submitted)
    assert 300 - 5 < wait < 300 + 30  # DELIVERY_RETRY_FIRST from the attempt
    [deferral] = Event.objects.filter(recipient=busy)
    assert (deferral.type, deferral.data["code"], deferral.data["enhanced"]) == (
        "deferral", 451, "4.2.0")

    refused = Recipient.objects.get(address="reject-m@sink.test")
    [failure] = Event.objects.filter(recipient=refused)
    assert (failure.type, failure.data["code"], failure.data["enhanced"],
            failure.data["text"]) == ("failure", 550, "5.1.1", "No such user here")
    assert refused.last_response == "550 5.1.1 No such user here"

    lost = Recipient.objects.get(address="drop-m@sink.test")
    assert lost.last_code == 451 and "connection closed" in lost.last_response
    [attempt] = Attempt.objects.filter(recipient=lost)
    assert (attempt.outcome, attempt.host, attempt.ip) == ("deferred", "mx.sink.test",
                                                           "127.0.0.1")

    # The message page says why, for each recipient.
    client.force_login(alice)
    page = client.get(f"/messages/{mixed}/").content.decode()
    assert "550 5.1.1 No such user here" in page and "451 4.2.0 Mailbox busy" in page


def test_the_second_mx_takes_the_mail_when_the_first_is_dead(mx_server, sink, alice):
    login, password = services.create_login(alice)
    [queue_id] = submit(mx_server, login, password, ["ok@multi.test"])
    wait_for(lambda: settled([queue_id]), what="delivery")
    recipient = Recipient.objects.get(message__queue_id=queue_id)
    assert recipient.state == "delivered"
    [attempt] = Attempt.objects.filter(recipient=recipient)
    assert (attempt.host, attempt.ip) == ("mx.multi.test", "127.0.0.1")


@pytest.mark.parametrize("domain, state, code, enhanced", [
    ("nullmx.test", "failed", 556, "5.1.10"),
    ("nxdomain.test", "failed", 550, "5.1.2"),
    ("broken.test", "deferred", 451, "4.4.3"),
])
def test_routing_errors_settle_at_once_without_a_connection(mx_server, sink, alice, domain,
                                                            state, code, enhanced):
    login, password = services.create_login(alice)
    connections = sink.connections
    [queue_id] = submit(mx_server, login, password, [f"a@{domain}"])
    wait_for(lambda: settled([queue_id]), what="the routing outcome")
    recipient = Recipient.objects.get(message__queue_id=queue_id)
    assert (recipient.state, recipient.last_code, recipient.last_enhanced) == (
        state, code, enhanced)
    assert domain in recipient.last_response
    [event] = Event.objects.filter(recipient=recipient)
    assert event.type == ("failure" if state == "failed" else "deferral")
    assert sink.connections == connections


def test_connections_are_reused_within_the_destination_limit(mx_server, sink, alice):
    login, password = services.create_login(alice)
    time.sleep(2.5)  # earlier tests' idle connections are closed (DELIVERY_CONNECTION_IDLE)
    connections = sink.connections
    sink.most_open = 0
    count = 12
    ids = submit(mx_server, login, password, ["slow0.3@busy.test"], "reuse", count=count)
    wait_for(lambda: settled(ids), what="delivery of every message")
    assert set(states(ids).values()) == {"delivered"}
    used = sink.connections - connections
    assert used < count, used
    assert sink.most_open <= LIMIT
    assert sink.lines.count("RSET") >= count - used
