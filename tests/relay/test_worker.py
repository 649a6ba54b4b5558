"""The delivery worker in-process with a transport that records each transaction and answers
per domain: which recipients share a transaction, what the transport is given, and what each
answer turns into (states, events), a transport that raises included."""
import asyncio
import time

import pytest
from django.db import connection

from events.models import Event
from relay.delivery import DeliveryWorker, RecipientOutcome
from relay.models import Attempt, Recipient
from relay.queue_writer import Submission, write_batch
from relay.render_pool import RenderPool

pytestmark = pytest.mark.django_db(transaction=True)
HTML = (b"Subject: hi\r\nContent-Type: text/html\r\n\r\n"
        b'<a href="https://example.com/x">x</a>\r\n')


class RecordingTransport:
    """Answers by domain: a.example 250, defer.example 451, fail.example 550, boom.example
    raises."""

    def __init__(self):
        self.calls = []

    async def send(self, route_key, mail_from, recipients, data, ret, envid):
        self.calls.append((route_key, mail_from, recipients, data, ret, envid))
        if route_key == "boom.example":
            raise RuntimeError("transport bug")
        answer = {"defer.example": ("deferred", 451, "4.2.0", "mailbox busy"),
                  "fail.example": ("failed", 550, "5.1.1", "no such user")}.get(
            route_key, ("delivered", 250, "2.0.0", "ok"))
        return [RecipientOutcome(*answer, host=f"mx.{route_key}", ip="192.0.2.7", port=25,
                                 tls_version="TLSv1.3", duration_ms=3) for _ in recipients]

    async def close(self):
        pass


def queue_message(login, recipients, raw=HTML, ret="HDRS", envid="env-1"):
    # NOTIFY=DELAY: passed on, and no report within a test (tests/relay/test_reports_out.py)
    write_batch([Submission(
        queue_id=f"W{time.monotonic_ns()}", kind="submission", login_id=login.pk,
        owner_id=login.owner_id, mail_from="app@example.com", ret=ret, envid=envid, body="",
        client_ip="127.0.0.1", helo="h", tls_version="TLSv1.3", raw=raw,
        recipients=[(r, "DELAY", f"rfc822;{r}") for r in recipients])], set())


def pending() -> int:
    try:
        return Recipient.objects.filter(state="queued").count() + Recipient.objects.exclude(
            leased_by="").count()
    finally:
        connection.close()  # a thread of asyncio's: no session left behind


def run_worker(transport, settings, **kw):
    settings.DELIVERY_TRANSACTION_RECIPIENTS = kw.pop("per_transaction", 50)
    settings.DKIM_SIGNING = False  # its warning events are tests/senders' subject, not these

    async def main():
        worker = DeliveryWorker(transport, RenderPool(1, 30), poll=0.05, **kw)
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + 60
        while await asyncio.to_thread(pending):
            assert time.monotonic() < deadline, "worker did not finish"
            await asyncio.sleep(0.05)
        await worker.stop()
        await asyncio.wait([task], timeout=5)

    asyncio.run(main())


def test_identical_bytes_share_transactions_up_to_the_limit_per_domain(login, settings):
    queue_message(login[0], ["1@a.example", "2@a.example", "3@A.EXAMPLE", "4@a.example",
                             "5@b.example", "6@b.example", "7@b.example"])
    transport = RecordingTransport()
    run_worker(transport, settings, per_transaction=2)
    calls = sorted((route, [r.address for r in rcpts]) for route, _, rcpts, *_ in transport.calls)
    assert calls == [("a.example", ["1@a.example", "2@a.example"]),
                     ("a.example", ["3@A.EXAMPLE", "4@a.example"]),
                     ("b.example", ["5@b.example", "6@b.example"]),
                     ("b.example", ["7@b.example"])]
    route, sender, rcpts, data, ret, envid = transport.calls[0]
    assert (sender, ret, envid) == ("app@example.com", "HDRS", "env-1")
    assert (rcpts[0].notify, rcpts[0].orcpt) == ("DELAY", f"rfc822;{rcpts[0].address}")
    assert data == HTML  # no features: the bytes as stored
    assert set(Recipient.objects.values_list("state", flat=True)) == {"delivered"}


def test_per_recipient_tokens_or_verp_mean_one_transaction_each(login, settings):
    from credentials import services

    services.update_login(login[0], actor=None, features={"clicktracking": True})
    queue_message(login[0], ["1@a.example", "2@a.example", "3@a.example"])
    transport = RecordingTransport()
    run_worker(transport, settings)
    assert len(transport.calls) == 3 and len({c[3] for c in transport.calls}) == 3

    services.update_login(login[0], actor=None,
                          features={"clicktracking": False, "bouncetracking": True})
    queue_message(login[0], ["4@a.example", "5@a.example"])
    transport = RecordingTransport()
    run_worker(transport, settings)
    assert len(transport.calls) == 2
    assert len({c[1] for c in transport.calls}) == 2  # a VERP sender each
    assert len({c[3] for c in transport.calls}) == 1  # the same bytes


def test_each_answer_becomes_a_state_an_attempt_and_an_event(login, settings):
    queue_message(login[0], ["ok@a.example", "later@defer.example", "no@fail.example",
                             "bug@boom.example"])
    run_worker(RecordingTransport(), settings)
    got = {r.address: (r.state, r.last_response, r.attempts)
           for r in Recipient.objects.all()}
    assert got == {
        "ok@a.example": ("delivered", "250 2.0.0 ok", 1),
        "later@defer.example": ("deferred", "451 4.2.0 mailbox busy", 1),
        "no@fail.example": ("failed", "550 5.1.1 no such user", 1),
        "bug@boom.example": ("deferred", "451 4.4.0 Local transport error (RuntimeError)", 1),
    }
    events = sorted(Event.objects.values_list("recipient__address", "type"))
    assert events == [("bug@boom.example", "deferral"), ("later@defer.example", "deferral"),
                      ("no@fail.example", "failure"), ("ok@a.example", "delivery")]
    attempt = Attempt.objects.get(recipient__address="later@defer.example")
    assert (attempt.host, attempt.ip, attempt.port, attempt.tls_version, attempt.code,
            attempt.enhanced, attempt.duration_ms) == (
        "mx.defer.example", "192.0.2.7", 25, "TLSv1.3", 451, "4.2.0", 3)


class SlowTransport(RecordingTransport):
    async def send(self, route_key, mail_from, recipients, data, ret, envid):
        await asyncio.sleep(0.002)
        return await super().send(route_key, mail_from, recipients, data, ret, envid)


def test_a_stop_mid_run_gives_back_only_unsent_recipients(login, settings):
    for i in range(150):
        queue_message(login[0], [f"{i}@a.example"])
    first, second = SlowTransport(), SlowTransport()

    async def main():
        worker = DeliveryWorker(first, RenderPool(1, 30), poll=0.05, batch=20)
        task = asyncio.create_task(worker.run())
        while len(first.calls) < 40:
            await asyncio.sleep(0.005)
        await worker.stop()  # outcomes being written are written before any lease goes back
        await asyncio.wait([task], timeout=5)
        assert len(first.calls) < 150
        worker = DeliveryWorker(second, RenderPool(1, 30), poll=0.05)
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + 60
        while await asyncio.to_thread(pending):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await worker.stop()
        await asyncio.wait([task], timeout=5)

    asyncio.run(main())
    sent = [r.address for calls in (first.calls, second.calls) for c in calls for r in c[2]]
    assert len(sent) == len(set(sent)) == 150  # none twice, none lost
