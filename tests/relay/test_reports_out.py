"""DSNs out of the real record path: the delivery worker in-process with a scripted transport
(and queue.record_results with a fixed clock for the schedule); each report parsed back by the
email package and by flufl.bounce, and itself delivered by the same worker."""
import asyncio
import email
import email.policy
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from flufl.bounce import all_failures, scan_message

from events.models import Event
from relay import queue, reports_out
from relay.delivery import CaptureTransport, DeliveryWorker, RecipientOutcome
from relay.models import Attempt, Message, Recipient
from relay.queue_writer import Submission, write_batch
from relay.render_pool import RenderPool

pytestmark = pytest.mark.django_db(transaction=True)
SENDER = "app@sender.example"
ORIGINAL = (b"From: App <app@sender.example>\r\nTo: someone\r\nSubject: Order 42\r\n"
            b"Message-ID: <o42@sender.example>\r\n\r\nYour order.\r\n")
ANSWERS = {  # domain: (status, code, enhanced, text, next hop took NOTIFY)
    "fail.example": ("failed", 550, "5.1.1", "No such user here", True),
    "defer.example": ("deferred", 451, "4.2.0", "Mailbox busy", True),
    "dsn.example": ("delivered", 250, "2.0.0", "Ok: queued as A1", True),
    "nodsn.example": ("delivered", 250, "2.0.0", "Ok: queued as B2", False),
}


class ScriptedTransport:
    """Answers by domain (ANSWERS; anything else 250 with DSN) and records every transaction."""

    def __init__(self):
        self.calls = []

    async def send(self, route_key, mail_from, recipients, data, ret, envid):
        self.calls.append((route_key, mail_from, [r.address for r in recipients], data))
        status, code, enhanced, text, passed = ANSWERS.get(
            route_key, ("delivered", 250, "2.0.0", "Ok", True))
        return [RecipientOutcome(status, code, enhanced, text, host=f"mx.{route_key}",
                                 ip="192.0.2.9", port=25, dsn_passed=passed)
                for _ in recipients]

    async def close(self):
        pass


def queue_message(login, recipients, *, mail_from=SENDER, ret="HDRS", envid="Env-7",
                  raw=ORIGINAL) -> Message:
    """recipients: (address, NOTIFY) pairs; ORCPT is the address in upper case."""
    [mid] = write_batch([Submission(
        queue_id=f"R{time.monotonic_ns()}", kind="submission", login_id=login.pk,
        owner_id=login.owner_id, mail_from=mail_from, ret=ret, envid=envid, body="",
        client_ip="127.0.0.1", helo="h", tls_version="TLSv1.3", raw=raw,
        recipients=[(a, n, f"rfc822;{a.upper()}") for a, n in recipients])], set())
    return Message.objects.get(pk=mid)


def _busy() -> bool:
    try:
        return (Recipient.objects.filter(state="queued").exists()
                or Recipient.objects.exclude(leased_by="").exists())
    finally:
        connection.close()  # a thread of asyncio's: no session left behind


def run_worker(transport, until=_busy, timeout=60):
    """Run a worker until nothing is queued or leased (or until() turns False)."""
    async def main():
        worker = DeliveryWorker(transport, RenderPool(1, 30), poll=0.05)
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + timeout
        await asyncio.sleep(0.05)
        while await asyncio.to_thread(until):
            assert time.monotonic() < deadline, "worker did not finish"
            await asyncio.sleep(0.05)
        await worker.stop()
        await asyncio.wait([task], timeout=5)

    asyncio.run(main())


def parse(raw: bytes):
    return email.message_from_bytes(bytes(raw), policy=email.policy.default)


def status_blocks(report):
    [part] = [p for p in report.walk() if p.get_content_type() == "message/delivery-status"]
    return part.get_payload()


def dsns(message: Message) -> list[Message]:
    return list(Message.objects.filter(dsn_of=message).order_by("id"))


def test_a_failure_sends_one_failed_dsn_that_is_delivered_and_readable(login, settings):
    settings.SMTP_HOSTNAME = "relay.smtpeter.test"
    message = queue_message(login[0], [("a@fail.example", ""), ("b@fail.example", "FAILURE"),
                                       ("c@ok.example", "")])
    transport = ScriptedTransport()
    run_worker(transport)

    [report] = dsns(message)
    assert (report.mail_from, report.features, report.kind) == ("", {}, "submission")
    assert (report.owner_id, report.login_id) == (message.owner_id, message.login_id)
    [to] = report.recipients.all()
    assert (to.address, to.state) == (SENDER, "delivered")  # queued and delivered in turn
    [sent] = [c for c in transport.calls if c[1] == ""]
    assert sent[:3] == ("sender.example", "", [SENDER])
    # Sent as stored, under the relay's DKIM signature (tests/senders verify it).
    assert sent[3].startswith(b"DKIM-Signature: ") and sent[3].endswith(bytes(report.raw))

    msg = parse(report.raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["To"].addresses[0].addr_spec == SENDER
    assert msg["From"].addresses[0].addr_spec == "MAILER-DAEMON@relay.smtpeter.test"
    first, *per_rcpt = status_blocks(msg)
    assert first["Reporting-MTA"] == "dns; relay.smtpeter.test"
    assert first["Original-Envelope-Id"] == "Env-7"
    assert email.utils.parsedate_to_datetime(first["Arrival-Date"]) == (
        message.received_at.replace(microsecond=0))
    got = {b["Final-Recipient"]: b for b in per_rcpt}
    assert set(got) == {"rfc822; a@fail.example", "rfc822; b@fail.example"}
    block = got["rfc822; a@fail.example"]
    assert (block["Action"], block["Status"], block["Remote-MTA"], block["Diagnostic-Code"],
            block["Original-Recipient"]) == (
        "failed", "5.1.1", "dns; mx.fail.example", "smtp; 550 5.1.1 No such user here",
        "rfc822;A@FAIL.EXAMPLE")
    assert block["Last-Attempt-Date"]
    [returned] = [p for p in msg.walk() if p.get_content_type() == "text/rfc822-headers"]
    assert b"Subject: Order 42" in returned.get_payload(decode=True)
    # flufl.bounce reads Original-Recipient first: the address as the sender wrote it (ORCPT).
    for parsed in (parse(report.raw), email.message_from_bytes(bytes(report.raw))):
        assert scan_message(parsed) == {b"A@FAIL.EXAMPLE", b"B@FAIL.EXAMPLE"}

    assert set(Recipient.objects.filter(message=message, dsn_sent=True)
               .values_list("address", flat=True)) == {"a@fail.example", "b@fail.example"}
    [event] = Event.objects.filter(message=message, type="dsn")
    assert event.data == {"action": "failed", "queue_id": report.queue_id, "to": SENDER,
                          "recipients": ["a@fail.example", "b@fail.example"]}
    assert not Event.objects.filter(message=report, type="dsn").exists()  # null sender: no loop


def test_ret_full_returns_the_original_as_received(login):
    message = queue_message(login[0], [("a@fail.example", "")], ret="FULL")
    run_worker(ScriptedTransport())
    [report] = dsns(message)
    [part] = [p for p in parse(report.raw).walk() if p.get_content_type() == "message/rfc822"]
    assert bytes(message.raw) in bytes(report.raw)
    assert part.get_payload()[0]["Subject"] == "Order 42"


def test_success_is_reported_only_where_the_next_hop_did_not_take_dsn(login):
    # RFC 3461 5.2.1: a hop that took NOTIFY=SUCCESS reports delivery itself; we say
    # "relayed" only for a hop without the extension.
    message = queue_message(login[0], [("a@dsn.example", "SUCCESS"),
                                       ("b@nodsn.example", "SUCCESS,FAILURE"),
                                       ("c@dsn.example", "FAILURE"), ("d@nodsn.example", "")])
    run_worker(ScriptedTransport())
    actions = {}
    for report in dsns(message):
        [block] = status_blocks(parse(report.raw))[1:]
        actions[block["Final-Recipient"]] = (block["Action"], block["Status"])
    assert actions == {"rfc822; b@nodsn.example": ("relayed", "2.0.0")}
    assert sorted(Event.objects.filter(message=message, type="dsn")
                  .values_list("data__action", flat=True)) == ["relayed"]


def test_capture_mode_says_delivered(login):
    message = queue_message(login[0], [("a@nodsn.example", "SUCCESS")])
    run_worker(CaptureTransport())
    [report] = dsns(message)
    [block] = status_blocks(parse(report.raw))[1:]
    assert (block["Action"], block["Remote-MTA"]) == ("delivered", None)
    assert report.recipients.get().captured  # the DSN itself went to the Outbox


@pytest.mark.parametrize("case", ["null sender", "bouncetracking", "bounce domain", "never",
                                  "success only"])
def test_no_report(login, settings, case):
    from credentials import services

    sender, notify = SENDER, ""
    if case == "null sender":
        sender = ""
    elif case == "bouncetracking":
        services.update_login(login[0], actor=None, features={"bouncetracking": True})
    elif case == "bounce domain":
        sender = f"b123@{settings.BOUNCE_DOMAIN.upper()}"
    elif case == "never":
        notify = "NEVER"
    else:
        notify = "SUCCESS"
    message = queue_message(login[0], [("a@fail.example", notify)], mail_from=sender)
    run_worker(ScriptedTransport())
    assert Recipient.objects.get(message=message).state == "failed"
    assert Event.objects.filter(message=message, type="failure").count() == 1
    assert dsns(message) == [] and Message.objects.count() == 1
    assert not Event.objects.filter(type="dsn").exists()


def test_a_deferral_is_reported_once_after_dsn_delay_after(login, settings):
    settings.DELIVERY_RETRY_FIRST = settings.DELIVERY_RETRY_MAX = 0.05
    settings.DSN_DELAY_AFTER = 0.5
    settings.DELIVERY_MAX_LIFETIME = 3600
    message = queue_message(login[0], [("a@defer.example", "DELAY,FAILURE"),
                                       ("b@defer.example", "FAILURE")])
    transport = ScriptedTransport()

    def retries_after(report: Message) -> int:
        return Attempt.objects.filter(recipient__address="a@defer.example",
                                      time__gt=report.received_at).count()

    def until():
        # Until the report is out and the recipient was retried twice more after it (a second
        # report would have come with those): counted, not timed, so a slow machine waits.
        try:
            report = Message.objects.filter(dsn_of=message, recipients__state="delivered").first()
            return report is None or retries_after(report) < 2
        finally:
            connection.close()

    run_worker(transport, until)
    [report] = dsns(message)
    assert retries_after(report) >= 2  # retried on past the report, with no second report
    [block] = status_blocks(parse(report.raw))[1:]
    will_retry = email.utils.parsedate_to_datetime(block["Will-Retry-Until"])
    assert will_retry == queue.deadline(message.received_at).replace(microsecond=0)
    assert (block["Final-Recipient"], block["Action"], block["Status"],
            block["Diagnostic-Code"]) == ("rfc822; a@defer.example", "delayed", "4.2.0",
                                          "smtp; 451 4.2.0 Mailbox busy")
    a = Recipient.objects.get(address="a@defer.example")
    assert (a.dsn_delayed_sent, a.dsn_sent, a.state) == (True, False, "deferred")
    first_deferred = a.first_deferred_at
    assert report.received_at - first_deferred >= timedelta(seconds=0.5)


T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def result(r, **kw):
    values = {"outcome": "deferred", "code": 451, "enhanced": "4.2.0", "text": "Mailbox busy",
              "host": "mx.defer.example"}
    return queue.Result(r.pk, **{**values, **kw})


def test_delayed_then_expired_on_the_clock(login, settings):
    settings.DELIVERY_RETRY_FIRST, settings.DELIVERY_RETRY_MAX = 300, 3600
    settings.DSN_DELAY_AFTER, settings.DELIVERY_MAX_LIFETIME = 4 * 3600, 86400
    message = queue_message(login[0], [("a@defer.example", "DELAY,FAILURE")])
    Message.objects.filter(pk=message.pk).update(received_at=T0)
    [r] = message.recipients.all()
    for hours in (0, 1, 3.9, 4, 5, 6):  # deferred at each: one report, at the 4-hour mark
        now = T0 + timedelta(hours=hours)
        Recipient.objects.filter(pk=r.pk).update(next_attempt_at=now)
        assert queue.claim("w", 10, now=now)
        queue.defer("w", [result(r)], now=now)
        assert len(dsns(message)) == (1 if hours >= 4 else 0), hours
    [delayed] = dsns(message)
    assert delayed.received_at  # queued at once: due now, so the worker's claim takes it
    assert delayed.recipients.get().next_attempt_at <= datetime.now(UTC)

    end = T0 + timedelta(days=1)
    Recipient.objects.filter(pk=r.pk).update(next_attempt_at=end)
    queue.claim("w", 10, now=end)
    queue.defer("w", [result(r)], now=end)  # at the deadline: expired, failed
    delayed, failed = dsns(message)
    [block] = status_blocks(parse(failed.raw))[1:]
    assert (block["Action"], block["Status"], block["Diagnostic-Code"]) == (
        "failed", "5.4.7", "smtp; 451 4.2.0 Mailbox busy")
    assert all_failures(parse(failed.raw)) == (set(), {b"A@DEFER.EXAMPLE"})
    assert all_failures(parse(delayed.raw)) == ({b"A@DEFER.EXAMPLE"}, set())
    assert [e.data["action"] for e in Event.objects.filter(message=message, type="dsn")
            .order_by("id")] == ["delayed", "failed"]


def test_one_report_per_message_and_action_in_a_batch(login):
    one = queue_message(login[0], [("a@x.example", ""), ("b@x.example", "FAILURE"),
                                   ("c@x.example", "SUCCESS"), ("d@x.example", "SUCCESS")])
    two = queue_message(login[0], [("e@x.example", "")])
    rs = {r.address: r for r in Recipient.objects.all()}
    assert len(queue.claim("w", 10)) == 5
    failed = {"outcome": "failed", "code": 550, "enhanced": "5.1.1", "text": "no"}
    ok = {"outcome": "delivered", "code": 250, "enhanced": "2.0.0", "text": "ok"}
    queue.record_results("w", [result(rs["a@x.example"], **failed),
                               result(rs["b@x.example"], **failed),
                               result(rs["c@x.example"], **ok),
                               result(rs["d@x.example"], **ok),
                               result(rs["e@x.example"], **failed)])
    shape = sorted((d.dsn_of_id, tuple(b["Final-Recipient"] for b in
                                       status_blocks(parse(d.raw))[1:]))
                   for d in Message.objects.exclude(dsn_of=None))
    assert shape == [(one.pk, ("rfc822; a@x.example", "rfc822; b@x.example")),
                     (one.pk, ("rfc822; c@x.example", "rfc822; d@x.example")),
                     (two.pk, ("rfc822; e@x.example",))]


def test_the_report_is_written_with_its_outcome_or_not_at_all(login, monkeypatch):
    message = queue_message(login[0], [("a@x.example", "")])
    [r] = message.recipients.all()
    queue.claim("w", 10)
    failed = {"outcome": "failed", "code": 550, "enhanced": "5.1.1", "text": "no"}

    def broken(events):
        raise RuntimeError("database gone")

    monkeypatch.setattr(reports_out, "record_many", broken)
    with pytest.raises(RuntimeError):
        queue.record_results("w", [result(r, **failed)])
    assert Message.objects.count() == 1  # no report without its outcome ...
    r.refresh_from_db()
    assert (r.state, r.dsn_sent, r.leased_by) == ("queued", False, "w")  # ... nor the reverse
    monkeypatch.undo()
    woken = []
    assert queue.record_results("w", [result(r, **failed)], on_dsn=woken.append) == 1
    assert queue.record_results("w", [result(r, **failed)]) == 0  # lease gone: not twice
    [report] = dsns(message)
    assert woken == [[report.pk]]


def test_a_report_that_cannot_be_built_costs_only_itself(login, monkeypatch):
    message = queue_message(login[0], [("a@x.example", "")])
    [r] = message.recipients.all()
    queue.claim("w", 10)

    def broken(**kw):
        raise ValueError("no")

    monkeypatch.setattr(reports_out, "build_dsn", broken)
    queue.record_results("w", [result(r, outcome="failed", code=550, enhanced="5.1.1")])
    r.refresh_from_db()
    assert r.state == "failed" and dsns(message) == []
    [warning] = Event.objects.filter(message=message, type="warning")
    assert warning.data["reason"] == "failed DSN not sent: ValueError: no"
