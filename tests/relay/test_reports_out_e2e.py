"""A DSN end to end: a real runsmtp in capture mode takes a message with NOTIFY=SUCCESS over
TLS with AUTH; the "delivered" report is queued, wakes the worker, is itself delivered to the
Outbox, and the two message pages link to each other."""
import email
import email.policy
import smtplib

import pytest
from django.db import connection

from credentials import services
from events.models import Event
from relay.models import Capture, Message

from .smtp_helpers import HOST, Server
from .test_delivery import CAPTURE_ENV, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
BODY = b"Subject: receipt please\r\nFrom: app@example.com\r\n\r\nHello.\r\n"


@pytest.fixture(scope="module")
def capture_server(django_db_setup, django_db_blocker, tls_files, tmp_path_factory):
    with django_db_blocker.unblock():
        connection.ensure_connection()
    server = Server(cert=tls_files[0], key=tls_files[1],
                    env_extra={**CAPTURE_ENV, "SMTP_HOSTNAME": "relay.e2e.test"},
                    workdir=tmp_path_factory.mktemp("runsmtp")).start()
    yield server
    server.stop()
    log = server.log_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]


def test_a_success_report_is_queued_delivered_and_linked(capture_server, alice, client):
    login, password = services.create_login(alice)
    with smtplib.SMTP_SSL(HOST, capture_server.tls_port,
                          context=capture_server.client_context()) as s:
        s.login(login.username, password)
        assert s.has_extn("dsn")
        s.mail("app@example.com", ["RET=FULL", "ENVID=order+2B42"])
        assert s.rcpt("bob@example.org", ["NOTIFY=SUCCESS", "ORCPT=rfc822;Bob@example.org"])[0] \
            == 250
        assert s.rcpt("carol@example.org")[0] == 250  # no NOTIFY: no report on success
        code, reply = s.data(BODY)
        assert code == 250, reply
        queue_id = reply.decode().rsplit(" ", 1)[1]

    message = Message.objects.get(queue_id=queue_id)
    # The poll is 120 s: the report is claimed because its commit woke the worker.
    capture = wait_for(lambda: Capture.objects.filter(message__dsn_of=message).first(),
                       timeout=30, what="the DSN in the Outbox")
    report = capture.message
    assert [m.pk for m in Message.objects.filter(dsn_of=message)] == [report.pk]
    assert (capture.mail_from, capture.recipient.address) == ("", "app@example.com")
    assert (report.owner_id, report.login_id, report.mail_from) == (alice.pk, login.pk, "")

    msg = email.message_from_bytes(bytes(capture.data), policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    [status] = [p for p in msg.walk() if p.get_content_type() == "message/delivery-status"]
    first, block = status.get_payload()
    assert (first["Reporting-MTA"], first["Original-Envelope-Id"]) == (
        "dns; relay.e2e.test", "order+42")
    assert (block["Final-Recipient"], block["Original-Recipient"], block["Action"],
            block["Status"]) == ("rfc822; bob@example.org", "rfc822;Bob@example.org",
                                 "delivered", "2.0.0")
    [returned] = [p for p in msg.walk() if p.get_content_type() == "message/rfc822"]
    assert returned.get_payload()[0]["Subject"] == "receipt please"  # RET=FULL

    [event] = Event.objects.filter(message=message, type="dsn")
    assert event.data["queue_id"] == report.queue_id and event.data["action"] == "delivered"

    client.force_login(alice)
    page = client.get(f"/messages/{queue_id}/").content.decode()
    assert f'/messages/{report.queue_id}/' in page
    # One timeline line for the report (its dsn event is not repeated), saying what it is.
    assert page.count('data-kind="dsn_message"') == 1 and 'data-kind="dsn"' not in page
    assert "Successful Mail Delivery Report" in page
    page = client.get(f"/messages/{report.queue_id}/").content.decode()
    assert f'a DSN about <a href="/messages/{queue_id}/">' in page
