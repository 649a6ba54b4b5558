"""The suppression check of the delivery worker, in-process with a scripted transport: a
suppressed recipient fails 550 5.7.1 without reaching the transport (a failure event, no
attempt, a DSN by the usual rules), the others of the message go out, and
X-SMTPeter-IgnoreSuppression: true delivers anyway (stripped on the way)."""
import pytest

from events.models import Event
from relay import suppression
from relay.models import Attempt, Recipient, Suppression

from .test_reports_out import (
    ORIGINAL,
    SENDER,
    ScriptedTransport,
    dsns,
    parse,
    queue_message,
    run_worker,
    status_blocks,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_suppressed_recipient_fails_at_once_and_never_reaches_the_wire(login):
    owner = login[0].owner
    suppression.record_complaint(owner.pk, "Carol@ok.example", detail="abuse report")
    message = queue_message(login[0], [("CAROL@ok.example", ""), ("dave@ok.example", "")])
    transport = ScriptedTransport()
    run_worker(transport)

    sent_to = [a for route, sender, rcpts, _ in transport.calls if sender for a in rcpts]
    assert sent_to == ["dave@ok.example"]
    carol = Recipient.objects.get(message=message, address="CAROL@ok.example")
    assert (carol.state, carol.last_code, carol.last_enhanced, carol.last_response,
            carol.attempts) == ("failed", 550, "5.7.1", "550 5.7.1 suppressed: complaint", 0)
    assert not Attempt.objects.filter(recipient=carol).exists()
    [failure] = Event.objects.filter(recipient=carol)
    assert failure.type == "failure"
    assert (failure.data["code"], failure.data["enhanced"], failure.data["text"]) == (
        550, "5.7.1", "suppressed: complaint")
    assert Recipient.objects.get(address="dave@ok.example").state == "delivered"

    # The usual failure DSN to the sender (not bouncetracking), itself never suppressed.
    suppression.add(owner.pk, SENDER, Suppression.Reason.MANUAL, actor=owner)
    run_worker(transport)
    [report] = dsns(message)
    assert report.recipients.get().state == "delivered"
    _, block = status_blocks(parse(report.raw))
    assert (block["Action"], block["Status"], block["Diagnostic-Code"]) == (
        "failed", "5.7.1", "smtp; 550 5.7.1 suppressed: complaint")
    assert block["Remote-MTA"] is None and block["Last-Attempt-Date"] is None


def test_every_recipient_suppressed_sends_nothing(login):
    owner = login[0].owner
    for address in ("a@ok.example", "b@ok.example"):
        suppression.record_bounce(owner.pk, address, "hard", detail="550 5.1.1 no such user")
    message = queue_message(login[0], [("a@ok.example", "NEVER"), ("b@ok.example", "NEVER")])
    transport = ScriptedTransport()
    run_worker(transport)
    assert transport.calls == []
    assert set(message.recipients.values_list("state", "last_response")) == {
        ("failed", "550 5.7.1 suppressed: hard_bounce")}
    assert dsns(message) == []  # NOTIFY=NEVER


@pytest.mark.parametrize("value, delivered", [("true", True), ("TRUE", True),
                                              ("false", False), ("yes", False)])
def test_the_override_header_delivers_anyway_and_is_stripped(login, value, delivered):
    owner = login[0].owner
    suppression.record_complaint(owner.pk, "carol@ok.example")
    raw = f"X-SMTPeter-IgnoreSuppression: {value}\r\n".encode() + ORIGINAL
    message = queue_message(login[0], [("carol@ok.example", "NEVER")], raw=raw)
    transport = ScriptedTransport()
    run_worker(transport)
    carol = message.recipients.get()
    if delivered:
        assert carol.state == "delivered"
        [(_, _, rcpts, data)] = transport.calls
        assert rcpts == ["carol@ok.example"]
        # As submitted minus the override header, under the relay's DKIM signature.
        assert b"x-smtpeter" not in data.lower() and data.endswith(ORIGINAL)
        assert data.startswith(b"DKIM-Signature: ")
    else:
        assert (carol.state, transport.calls) == ("failed", [])


def test_another_customer_s_list_does_not_count(login, bob):
    suppression.record_complaint(bob.pk, "carol@ok.example")
    message = queue_message(login[0], [("carol@ok.example", "")])
    run_worker(ScriptedTransport())
    assert message.recipients.get().state == "delivered"


def test_an_expired_entry_does_not_suppress(login):
    from datetime import timedelta

    from django.utils import timezone

    owner = login[0].owner
    suppression.record_bounce(owner.pk, "carol@ok.example", "hard",
                              now=timezone.now() - timedelta(days=400))
    message = queue_message(login[0], [("carol@ok.example", "")])
    run_worker(ScriptedTransport())
    assert message.recipients.get().state == "delivered"


def test_the_suppressed_failure_is_on_the_owners_message_page(login, client):
    owner = login[0].owner
    suppression.record_complaint(owner.pk, "erin@ok.example", detail="abuse report")
    message = queue_message(login[0], [("erin@ok.example", "")])
    run_worker(ScriptedTransport())
    client.force_login(owner)
    page = client.get(f"/messages/{message.queue_id}/").content.decode()
    assert "suppressed: complaint" in page and "erin@ok.example" in page
def test_a_big_message_is_read_alone_and_still_checked(login):
    # Over relay.queue.BATCH_RAW_MAX: the claim batch leaves its bytes for its own read; its
    # suppression lookup was still made with the batch.
    owner = login[0].owner
    suppression.record_complaint(owner.pk, "carol@ok.example", detail="abuse report")
    big = b"Subject: big\r\n\r\n" + b"x" * 100 + b"\r\n" * 40_000
    message = queue_message(login[0], [("carol@ok.example", "NEVER"),
                                       ("dave@ok.example", "NEVER")], raw=big)
    assert message.size > 64 * 1024
    transport = ScriptedTransport()
    run_worker(transport)
    [(_, _, rcpts, data)] = transport.calls
    assert rcpts == ["dave@ok.example"] and data == big
    assert Recipient.objects.get(address="carol@ok.example").last_response == (
        "550 5.7.1 suppressed: complaint")
