"""relay.queue: the retry schedule, claims with leases (SQLite and PostgreSQL), outcomes with
their attempts and events, intake never claimed, and the audited staff actions."""
import threading
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone

from events.models import Event
from relay import queue
from relay.models import Attempt, Capture, Message, QueueAudit, Recipient
from relay.queue_writer import Submission, write_batch

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
S = Recipient.State


# -- the schedule: plain functions -------------------------------------------------------


def test_retries_double_from_the_first_up_to_the_most(settings):
    settings.DELIVERY_RETRY_FIRST, settings.DELIVERY_RETRY_MAX = 300, 3600
    assert [queue.retry_delay(n).total_seconds() for n in range(1, 8)] == [
        300, 600, 1200, 2400, 3600, 3600, 3600]
    assert queue.retry_delay(10_000).total_seconds() == 3600  # no overflow
    assert queue.retry_delay(2, first=10, most=15).total_seconds() == 15


def test_deadline_is_the_lifetime_or_the_message_s_own_sooner_end(settings):
    settings.DELIVERY_MAX_LIFETIME = 86400
    assert queue.deadline(T0) == T0 + timedelta(days=1)
    assert queue.deadline(T0, T0 + timedelta(hours=1)) == T0 + timedelta(hours=1)
    assert queue.deadline(T0, None, lifetime=60) == T0 + timedelta(minutes=1)


def test_the_last_retry_is_at_the_deadline_and_a_deferral_there_is_final(settings):
    settings.DELIVERY_RETRY_FIRST, settings.DELIVERY_RETRY_MAX = 300, 3600
    end = T0 + timedelta(minutes=7)
    assert queue.next_attempt(1, T0, end) == T0 + timedelta(minutes=5)
    assert queue.next_attempt(2, T0 + timedelta(minutes=5), end) == end  # not 10 min later
    assert queue.next_attempt(3, end, end) is None
    assert queue.next_attempt(3, end + timedelta(seconds=1), end) is None


# -- the queue in the database ------------------------------------------------------------


def make(n: int = 1, state: str = S.QUEUED, due: datetime = T0, kind: str = "submission",
         **fields) -> list[Recipient]:
    message = Message.objects.create(mail_from="app@example.com", kind=kind,
                                     raw=b"Subject: x\r\n\r\ny\r\n")
    Message.objects.filter(pk=message.pk).update(received_at=T0 - timedelta(minutes=1))
    return [Recipient.objects.create(message=message, address=f"r{i}@example.org", state=state,
                                     next_attempt_at=due, **fields) for i in range(n)]


def ids(claims) -> set[int]:
    return {c.recipient_id for c in claims}


@pytest.mark.django_db
def test_claim_takes_due_pending_recipients_only_and_leases_them(settings):
    settings.DELIVERY_LEASE = 60
    due = make(2) + make(1, S.DEFERRED, attempts=1)
    make(1, due=T0 + timedelta(days=1))  # not due yet
    for state in (S.HELD, S.INTAKE, S.DELIVERED, S.FAILED):
        make(1, state)
    claims = queue.claim("w1", 100, now=T0)
    assert ids(claims) == {r.pk for r in due}
    assert {(c.address, c.attempts) for c in claims} == {
        ("r0@example.org", 0), ("r1@example.org", 0), ("r0@example.org", 1)}
    leased = Recipient.objects.filter(pk__in=ids(claims))
    assert set(leased.values_list("leased_by", "lease_until")) == {
        ("w1", T0 + timedelta(seconds=60))}
    # Leased: nobody else gets them until the lease ends; then someone does (a crashed worker).
    assert queue.claim("w2", 100, now=T0 + timedelta(seconds=59)) == []
    again = queue.claim("w2", 100, now=T0 + timedelta(seconds=61))
    assert ids(again) == ids(claims)
    assert set(leased.values_list("leased_by", flat=True)) == {"w2"}


@pytest.mark.django_db
def test_retries_never_starve_fresh_mail_nor_fresh_mail_retries():
    old = make(10, S.DEFERRED, due=T0 - timedelta(hours=5), attempts=3)
    fresh = make(10, due=T0)
    first = queue.claim("w", 4, now=T0)
    assert len(ids(first) & {r.pk for r in fresh}) == 2
    assert len(ids(first) & {r.pk for r in old}) == 2
    # Alone, each kind fills the whole claim.
    Recipient.objects.filter(pk__in=[r.pk for r in fresh]).update(state=S.HELD)
    assert len(queue.claim("w", 5, now=T0)) == 5
    Recipient.objects.filter(pk__in=[r.pk for r in fresh]).update(state=S.QUEUED)
    Recipient.objects.filter(pk__in=[r.pk for r in old]).update(state=S.HELD)
    assert len(queue.claim("w", 5, now=T0)) == 5


@pytest.mark.django_db
def test_claims_walk_a_long_queue_in_bounded_batches():
    everyone = {r.pk for r in make(25)}
    seen = []
    while claims := queue.claim("w", 10, now=T0):
        assert len(claims) <= 10
        seen += [c.recipient_id for c in claims]
    assert sorted(seen) == sorted(everyone)


@pytest.mark.django_db(transaction=True)
def test_concurrent_claimers_get_disjoint_sets():
    everyone = {r.pk for r in make(60)}
    got: list[list[int]] = []
    errors = []

    def claimer(name):
        try:
            while claims := queue.claim(name, 7, now=T0):
                got.append([c.recipient_id for c in claims])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    flat = [i for batch in got for i in batch]
    assert sorted(flat) == sorted(everyone)  # each exactly once


@pytest.mark.django_db(transaction=True)
def test_postgresql_skip_locked_claims_past_rows_another_transaction_holds():
    if connection.vendor != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite serialises claimers")
    everyone = {r.pk for r in make(10)}
    locked = threading.Event()
    done = threading.Event()
    held: list[int] = []

    def holder():
        # A claimer in the middle of its transaction: rows selected FOR UPDATE, not yet leased.
        try:
            with transaction.atomic():
                held.extend(row[0] for row in queue._due(S.QUEUED, T0, 4))
                locked.set()
                done.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    assert locked.wait(30)
    try:
        other = queue.claim("w2", 100, now=T0)  # would block on the locks without SKIP LOCKED
    finally:
        done.set()
        thread.join(30)
    assert len(held) == 4 and ids(other) == everyone - set(held)


def result(r: Recipient, **kw) -> queue.Result:
    values = {"outcome": "", "code": 451, "enhanced": "4.7.1", "text": "try later",
              "host": "mx.example.org", "ip": "192.0.2.1", "port": 25, "duration_ms": 12}
    return queue.Result(r.pk, **{**values, **kw})


@pytest.mark.django_db
def test_deferrals_follow_the_schedule_with_one_event_then_expire(settings):
    settings.DELIVERY_RETRY_FIRST, settings.DELIVERY_RETRY_MAX = 300, 3600
    settings.DELIVERY_MAX_LIFETIME = 1000
    [r] = make(1)
    queue.claim("w", 10, now=T0)
    assert queue.defer("w", [result(r)], now=T0) == 1
    r.refresh_from_db()
    assert (r.state, r.attempts, r.next_attempt_at, r.first_deferred_at, r.last_response) == (
        S.DEFERRED, 1, T0 + timedelta(seconds=300), T0, "451 4.7.1 try later")
    assert (r.lease_until, r.leased_by) == (None, "")

    t1 = T0 + timedelta(seconds=300)
    assert ids(queue.claim("w", 10, now=t1)) == {r.pk}
    queue.defer("w", [result(r, text="still busy")], now=t1)
    r.refresh_from_db()
    assert (r.attempts, r.next_attempt_at, r.first_deferred_at) == (
        2, T0 + timedelta(seconds=900), T0)
    # The message arrived at T0 - 60 s: its deadline is T0 + 940 s, the last try there.
    t2 = T0 + timedelta(seconds=900)
    queue.claim("w", 10, now=t2)
    queue.defer("w", [result(r)], now=t2)
    r.refresh_from_db()
    assert r.next_attempt_at == T0 + timedelta(seconds=940)
    t3 = T0 + timedelta(seconds=940)
    queue.claim("w", 10, now=t3)
    queue.defer("w", [result(r, text="no")], now=t3)
    r.refresh_from_db()
    assert (r.state, r.attempts, r.next_attempt_at) == (S.FAILED, 4, None)
    assert r.last_response == "5.4.7 Delivery time expired; last reply: 451 4.7.1 no"

    events = list(Event.objects.filter(recipient=r).order_by("id"))
    assert [e.type for e in events] == ["deferral", "failure"]
    assert events[0].data["text"] == "try later" and events[0].data["code"] == 451
    assert events[1].data["enhanced"] == "5.4.7" and events[1].data["expired"] is True
    attempts = list(Attempt.objects.filter(recipient=r).order_by("id"))
    assert [(a.outcome, a.code, a.enhanced, a.host, a.ip, a.port, a.duration_ms)
            for a in attempts[:1]] == [
        ("deferred", 451, "4.7.1", "mx.example.org", "192.0.2.1", 25, 12)]
    assert len(attempts) == 4


@pytest.mark.django_db
def test_max_deliver_time_shortens_the_deadline(settings):
    settings.DELIVERY_MAX_LIFETIME = 86400
    [r] = make(1)
    Message.objects.filter(pk=r.message_id).update(max_deliver_until=T0 + timedelta(seconds=10))
    queue.claim("w", 10, now=T0)
    queue.defer("w", [result(r)], now=T0)
    r.refresh_from_db()
    assert r.next_attempt_at == T0 + timedelta(seconds=10)


@pytest.mark.django_db
def test_delivered_failed_and_captured_outcomes():
    a, b, c = make(3)
    queue.claim("w", 10, now=T0)
    n = queue.record_results("w", [
        result(a, outcome="delivered", code=250, enhanced="2.0.0", text="ok",
               tls_note="STARTTLS failed (handshake); sent without TLS"),
        result(b, outcome="failed", code=550, enhanced="5.1.1", text="no such user"),
        result(c, outcome="delivered", code=250, enhanced="2.0.0", text="captured",
               host="capture", capture=b"bytes as sent", mail_from="verp@bounces.test"),
    ], now=T0)
    assert n == 3
    got = {r.pk: (r.state, r.captured, r.last_response, r.attempts)
           for r in Recipient.objects.filter(message_id=a.message_id)}
    assert got == {a.pk: (S.DELIVERED, False, "250 2.0.0 ok", 1),
                   b.pk: (S.FAILED, False, "550 5.1.1 no such user", 1),
                   c.pk: (S.DELIVERED, True, "250 2.0.0 captured", 1)}
    capture = Capture.objects.get()
    assert (capture.recipient_id, bytes(capture.data), capture.mail_from) == (
        c.pk, b"bytes as sent", "verp@bounces.test")
    assert sorted(Event.objects.values_list("type", "recipient_id")) == sorted([
        ("delivery", a.pk), ("failure", b.pk), ("delivery", c.pk), ("dsn", None)])
    assert Event.objects.get(recipient=c).data["captured"] is True
    # An opportunistic STARTTLS given up (RFC 7435) is on the delivery's record.
    assert Event.objects.get(recipient=a).data["tls_note"].endswith("sent without TLS")
    assert "tls_note" not in Event.objects.get(recipient=b).data
    # No NOTIFY: the failure (only) is reported to the sender (tests/relay/test_reports_out.py)
    assert Recipient.objects.get(message__dsn_of=a.message_id).address == "app@example.com"


@pytest.mark.django_db
def test_an_outcome_without_the_lease_is_not_written():
    [r] = make(1)
    queue.claim("w1", 10, now=T0)
    assert ids(queue.claim("w2", 10, now=T0 + timedelta(hours=1))) == {r.pk}
    assert queue.deliver_ok("w1", [result(r, code=250)], now=T0) == 0  # w1's lease is gone
    r.refresh_from_db()
    assert (r.state, r.leased_by) == (S.QUEUED, "w2")
    assert not Attempt.objects.exists() and not Event.objects.exists()
    assert queue.unclaim("w2", [r.pk]) == 1
    assert ids(queue.claim("w3", 10, now=T0 + timedelta(hours=1))) == {r.pk}


@pytest.mark.django_db
def test_renew_extends_only_own_leases(settings):
    settings.DELIVERY_LEASE = 60
    [r] = make(1)
    queue.claim("w", 10, now=T0)
    assert queue.renew("other", [r.pk], now=T0 + timedelta(seconds=50)) == 0
    assert queue.renew("w", [r.pk], now=T0 + timedelta(seconds=50)) == 1
    assert queue.claim("x", 10, now=T0 + timedelta(seconds=100)) == []


def submission(kind: str, raw: bytes, login_id=None) -> Submission:
    return Submission(queue_id=f"Q{kind}{len(raw)}", kind=kind, login_id=login_id,
                      owner_id=None, mail_from="", ret="", envid="", body="", client_ip=None,
                      helo="h", tls_version="", raw=raw,
                      recipients=[("postmaster@bounces.test", "", "")])


@pytest.mark.django_db
def test_intake_is_never_claimed(login):
    write_batch([submission("bounce", b"Subject: bounce\r\n\r\nx\r\n"),
                 submission("submission", b"Subject: out\r\n\r\nx\r\n", login[0].pk)], set())
    states = dict(Recipient.objects.values_list("message__kind", "state"))
    assert states == {"bounce": S.INTAKE, "submission": S.QUEUED}
    claims = queue.claim("w", 100, now=timezone.now() + timedelta(days=365))
    assert [Message.objects.get(pk=c.message_id).kind for c in claims] == ["submission"]


@pytest.mark.django_db
def test_the_queue_writer_keeps_max_deliver_time_only_when_it_is_sooner(settings, login):
    settings.DELIVERY_MAX_LIFETIME = 3600
    before = timezone.now()
    write_batch([
        submission("submission", b"X-SMTPeter-MaxDeliverTime: 600\r\n\r\nx\r\n", login[0].pk),
        submission("submission", b"X-SMTPeter-MaxDeliverTime: 7200\r\nS: 1\r\n\r\nx\r\n",
                   login[0].pk),
        submission("submission", b"X-SMTPeter-MaxDeliverTime: soon\r\nS: 22\r\n\r\nx\r\n",
                   login[0].pk),
    ], set())
    got = [m.max_deliver_until for m in Message.objects.order_by("id")]
    assert before + timedelta(seconds=600) <= got[0] <= timezone.now() + timedelta(seconds=600)
    assert got[1:] == [None, None]


# -- staff actions ------------------------------------------------------------------------


def mailq(*args) -> str:
    out = StringIO()
    call_command("mailq", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_hold_release_retry_delete_from_the_cli_each_audited():
    a, b = make(2)
    Recipient.objects.filter(pk=b.pk).update(state=S.DEFERRED, attempts=2,
                                              next_attempt_at=T0 + timedelta(days=1),
                                              last_response="451 4.7.1 later")
    queue_id = a.message.queue_id
    assert mailq("--hold", queue_id) == f"{queue_id}: 2 recipient(s) held\n"
    assert queue.claim("w", 10, now=T0 + timedelta(days=2)) == []
    text = mailq()
    assert "r0@example.org [held]" in text and "r1@example.org [held] 2 attempts" in text
    assert "(451 4.7.1 later)" in text

    assert mailq("--release", queue_id) == f"{queue_id}: 2 recipient(s) released\n"
    states = dict(Recipient.objects.values_list("address", "state"))
    assert states == {"r0@example.org": S.QUEUED, "r1@example.org": S.DEFERRED}
    assert ids(queue.claim("w", 10)) == {a.pk, b.pk}  # due at once
    queue.unclaim("w", [a.pk, b.pk])

    Recipient.objects.filter(pk=b.pk).update(next_attempt_at=timezone.now() + timedelta(hours=1))
    assert mailq("--retry", queue_id) == f"{queue_id}: 2 recipient(s) made due now\n"
    assert ids(queue.claim("w", 10)) == {a.pk, b.pk}
    assert "nothing to do" in mailq("--release", queue_id)

    assert mailq("--delete", queue_id) == f"{queue_id}: 2 recipient(s) deleted\n"
    assert not Message.objects.exists()
    entries = list(QueueAudit.objects.order_by("id").values_list("action", "queue_id",
                                                                 "recipients", "actor_name"))
    assert [e[0] for e in entries] == ["hold", "release", "retry", "delete"]
    assert all(e[1] == queue_id and e[2] == ["r0@example.org", "r1@example.org"]
               and e[3].startswith("cli:") for e in entries)
    assert QueueAudit.objects.get(action="delete").details["states"] == [
        ["r0@example.org", "queued"], ["r1@example.org", "deferred"]]
    with pytest.raises(CommandError, match="no message with queue id NOPE"):
        mailq("--hold", "NOPE")


@pytest.mark.django_db
def test_audit_entries_are_append_only():
    [r] = make(1)
    entry = queue.hold(r.message.queue_id, actor_name="tester")
    entry.details = {"changed": True}
    with pytest.raises(ValueError, match="append-only"):
        entry.save()
    with pytest.raises(ValueError, match="append-only"):
        entry.delete()


@pytest.mark.django_db
def test_a_hard_failure_is_classified_and_suppresses_the_address(django_user_model):
    from relay import suppression

    owner = django_user_model.objects.create_user("owner")
    a, b, c = make(3)
    Message.objects.filter(pk=a.message_id).update(owner=owner)
    queue.claim("w", 10, now=T0)
    queue.record_results("w", [
        result(a, outcome="failed", code=550, enhanced="5.1.1", text="no such user"),
        result(b, outcome="failed", code=552, enhanced="5.2.2", text="mailbox full"),
        # Refused by us without an attempt (suppressed already): nothing new to learn.
        result(c, outcome="failed", code=550, enhanced="5.7.1", text="suppressed: complaint",
               attempted=False),
    ], now=T0)
    data = {e.recipient_id: e.data for e in Event.objects.filter(type="failure")}
    assert (data[a.pk]["class"], data[a.pk]["reason"]) == ("hard", "invalid_recipient")
    assert (data[b.pk]["class"], data[b.pk]["reason"]) == ("soft", "mailbox_full")
    found = suppression.is_suppressed(owner.pk, [r.address for r in (a, b, c)])
    assert list(found) == [a.address]
    entry = found[a.address]
    assert entry.reason == "hard_bounce"
    assert entry.event_id == Event.objects.get(type="failure", recipient=a).pk


@pytest.mark.django_db
def test_a_claim_batch_reads_its_messages_at_once_and_leaves_big_raw_for_later():
    small = make()[0].message
    big = Message.objects.create(mail_from="", raw=b"x" * 100, size=100, owner=None)
    gone = make()[0].message_id
    Message.objects.filter(pk=gone).delete()
    found = queue.load_messages([small.pk, big.pk, gone], raw_max=99)
    assert set(found) == {small.pk, big.pk}  # a deleted message is missing, not an error
    assert found[small.pk].raw == b"Subject: x\r\n\r\ny\r\n"
    assert found[small.pk].queue_id == small.queue_id and not found[small.pk].is_dsn
    assert found[big.pk].raw is None  # delivery reads it alone
    assert queue.load_message(big.pk).raw == b"x" * 100
    assert queue.load_message(gone) is None
