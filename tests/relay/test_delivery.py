"""Delivery inside a real runsmtp in capture mode: mail submitted over TLS with AUTH ends in the
Outbox with its login's features applied, with its Attempt and events; a render that kills
its process costs only that message; intake is never delivered. Restarts, kill -9, held mail
and cut connections are in test_delivery_restart.py (servers of their own)."""
import smtplib
import time

import pytest
from django.db import connection

from credentials import services
from events.models import Event
from features.overrides import strip_smtpeter_headers
from relay.models import Attempt, Capture, Message, Recipient

from .conftest import SERVER_ENV
from .smtp_helpers import HOST, LineClient, Server

pytestmark = pytest.mark.django_db(transaction=True)
CAPTURE_ENV = {
    **SERVER_ENV,
    "DELIVERY_MODE": "capture",
    # Longer than any wait below: new mail must wake the worker, not wait for a poll.
    "DELIVERY_POLL_INTERVAL": "120",
    "TRACKING_BASE_URL": "https://t.test/t/",
}
HTML = (b"Subject: hello\r\nX-SMTPeter-Tags: news\r\nContent-Type: text/html\r\n\r\n"
        b'<p>Read <a href="https://example.com/article">the article</a></p>\r\n')


@pytest.fixture(scope="module")
def capture_server(django_db_setup, django_db_blocker, tls_files, tmp_path_factory):
    with django_db_blocker.unblock():
        connection.ensure_connection()
    server = Server(cert=tls_files[0], key=tls_files[1], env_extra=CAPTURE_ENV,
                    workdir=tmp_path_factory.mktemp("runsmtp")).start()
    yield server
    server.stop()
    log = server.log_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]


def submit(server: Server, login, password: str, recipients: list[str], body: bytes,
           count: int = 1) -> list[str]:
    """Send ``count`` messages over implicit TLS with AUTH; their queue ids."""
    ids = []
    with smtplib.SMTP_SSL(HOST, server.tls_port, context=server.client_context()) as s:
        s.login(login.username, password)
        for _ in range(count):
            s.mail("app@example.com")
            for r in recipients:
                assert s.rcpt(r)[0] == 250
            code, reply = s.data(body)
            assert code == 250, reply
            ids.append(reply.decode().rsplit(" ", 1)[1])
    return ids


def wait_for(check, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def delivered(queue_ids: list[str]) -> bool:
    rcpts = Recipient.objects.filter(message__queue_id__in=queue_ids)
    return rcpts.exists() and not rcpts.exclude(state=Recipient.State.DELIVERED).exists()


def test_sent_mail_lands_in_the_outbox_with_the_login_s_features(capture_server, alice, client):
    login, password = services.create_login(alice, features=["clicktracking", "bouncetracking"])
    started = time.monotonic()
    [queue_id] = submit(capture_server, login, password, ["a@example.org", "b@example.net"],
                        HTML)
    wait_for(lambda: delivered([queue_id]), what="delivery")
    assert time.monotonic() - started < 30  # woken by the commit, not by the 120 s poll

    message = Message.objects.get(queue_id=queue_id)
    captures = {c.recipient.address: c for c in Capture.objects.select_related("recipient")}
    assert set(captures) == {"a@example.org", "b@example.net"}
    tokens = set()
    for capture in captures.values():
        data = bytes(capture.data)
        assert b'<a href="https://t.test/t/c/' in data
        assert b"https://example.com/article" not in data and b"X-SMTPeter" not in data
        assert data.startswith(b"Received: ") and b"Subject: hello\r\n" in data
        tokens.add(data.split(b"https://t.test/t/c/")[1].split(b'"')[0])
        # bouncetracking: a VERP envelope sender of our bounce domain, per recipient
        assert capture.mail_from.endswith("@bounces.test") and capture.message_id == message.pk
    assert len(tokens) == 2 and len({c.mail_from for c in captures.values()}) == 2

    for r in message.recipients.all():
        assert (r.state, r.captured, r.attempts, r.last_code) == ("delivered", True, 1, 250)
        [attempt] = Attempt.objects.filter(recipient=r)
        assert (attempt.outcome, attempt.code, attempt.enhanced, attempt.host) == (
            "delivered", 250, "2.0.0", "capture")
        [event] = Event.objects.filter(recipient=r)
        assert (event.type, event.message_id, event.data["captured"]) == (
            "delivery", message.pk, True)

    # The tracked link works: the click is recorded and redirects to the original.
    token = sorted(tokens)[0].decode()
    response = client.get(f"/t/c/{token}")
    assert (response.status_code, response["Location"]) == (302, "https://example.com/article")
    assert Event.objects.filter(type="click", message=message).count() == 1
    assert f"{queue_id}: to=<a@example.org>" in capture_server.log_text()


def test_delivery_stores_the_urls_behind_the_tokens_and_a_click_reads_only_them(
        capture_server, alice, client):
    from relay.models import TrackedLink

    login, password = services.create_login(alice, features=["clicktracking", "openstracking"])
    body = HTML.replace(b"</p>", b'<img src="https://img.example/a.png"></p>')
    [queue_id] = submit(capture_server, login, password, ["c@example.org"], body)
    wait_for(lambda: delivered([queue_id]), what="delivery")
    message = Message.objects.get(queue_id=queue_id)
    assert sorted(TrackedLink.objects.filter(message=message)
                  .values_list("kind", "position", "url")) == [
        ("c", 0, "https://example.com/article"), ("o", 0, ""),
        ("o", 1, "https://img.example/a.png")]
    data = bytes(Capture.objects.get(message=message).data)
    token = data.split(b"https://t.test/t/c/")[1].split(b'"')[0].decode()
    # The stored message no longer derives that link: the click finds it all the same.
    Message.objects.filter(pk=message.pk).update(raw=b"Subject: gone\r\n\r\nnothing\r\n")
    response = client.get(f"/t/c/{token}")
    assert (response.status_code, response["Location"]) == (302, "https://example.com/article")


DEEP = (b"Subject: deep\r\nX-SMTPeter-InlineCSS: true\r\nContent-Type: text/html\r\n\r\n"
        b"<html><head><style>p{color:red}</style></head><body>\r\n"
        + (b"<div>" * 100 + b"\r\n") * 120
        + b'<a href="https://example.com/deep">deep</a>\r\n'
        + (b"</div>" * 100 + b"\r\n") * 120 + b"</body></html>\r\n")


def test_a_render_that_kills_its_process_costs_only_that_message(capture_server, alice):
    login, password = services.create_login(alice, features=["clicktracking"])
    # 12,000 nested elements under a <style> block: css-inline 0.24 overflows its stack and
    # dies by SIGSEGV (FACTS.md), in the render process; runsmtp must not notice.
    [deep] = submit(capture_server, login, password, ["deep@example.org"], DEEP)
    [fine] = submit(capture_server, login, password, ["fine@example.org"], HTML)
    wait_for(lambda: delivered([deep, fine]), what="both messages delivered")
    assert capture_server.proc.poll() is None

    deep_msg = Message.objects.get(queue_id=deep)
    sent = bytes(Capture.objects.get(message=deep_msg).data)
    warnings = list(Event.objects.filter(message=deep_msg, type="warning"))
    if any("crashed" in w.data["reason"] for w in warnings):
        # Sent exactly as submitted, minus the X-SMTPeter-* headers.
        assert sent == strip_smtpeter_headers(bytes(deep_msg.raw))
        assert [w.data["action"] for w in warnings] == ["sent unchanged"]
        assert "render process crashed; sent unchanged" in capture_server.log_text()
    else:  # a renderer that bounds the depth itself (issue: hardening) never crashes here
        assert b"https://t.test/t/c/" in sent and warnings
    # The message next to it was rendered as usual, and so is the next one.
    assert b"https://t.test/t/c/" in bytes(Capture.objects.get(message__queue_id=fine).data)
    [after] = submit(capture_server, login, password, ["after@example.org"], HTML)
    wait_for(lambda: delivered([after]), what="delivery after the crash")
    assert b"https://t.test/t/c/" in bytes(Capture.objects.get(message__queue_id=after).data)


def test_intake_mail_is_never_delivered(capture_server, alice):
    client = LineClient(capture_server, capture_server.mx_port)
    assert client.cmd("EHLO mx.example.net").code == 250
    assert client.send_message(b"Subject: bounce\r\n\r\nreport\r\n", mail_from="",
                               rcpt="postmaster@bounces.test").code == 250
    client.cmd("QUIT")
    client.close()
    login, password = services.create_login(alice)
    [queue_id] = submit(capture_server, login, password, ["c@example.org"], HTML)
    wait_for(lambda: delivered([queue_id]), what="the submission delivered")
    bounce = Recipient.objects.get(address="postmaster@bounces.test")
    assert (bounce.state, bounce.attempts, bounce.leased_by) == ("intake", 0, "")
    assert not Capture.objects.filter(recipient=bounce).exists()
    assert not Event.objects.filter(recipient=bounce).exists()
