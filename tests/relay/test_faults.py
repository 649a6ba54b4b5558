"""The fault test (issue 12), PostgreSQL only: three runsmtp processes with every role,
5,000 messages submitted across them to one counting sink, and during the run: kill -9 of one
process, every PostgreSQL backend of the test database terminated (twice), and the sink
dropping the connection at RCPT for one recipient in fifty until late in the run.

Afterwards every acknowledged message is delivered (none lost); the only duplicates are
recipients the dead process held leased at the kill, or messages a client sent again after a
reply it could not trust (a 4xx while the database was cut, or a server that died
mid-message), counted and printed; each delivered recipient has exactly one delivery event,
and no recipient more than one deferral event.

Webhooks: an endpoint of the sender's, subscribed to the delivery events (delivery, deferral,
failure), points at a receiver started here (tests/events/receiver.py; WEBHOOK_ALLOW_HTTP and
WEBHOOK_ALLOW_PRIVATE let the sender reach 127.0.0.1), which answers the first POSTs 503 and
takes 20 ms over each answer (so that the killed process has POSTs in flight).
Every such event has exactly one webhook-id acknowledged (2xx) at the receiver, signed with the
endpoint's secret: none lost; a webhook-id acknowledged twice (its 2xx was never recorded: a
kill -9 or a cut backend between the POST and its record) is counted and printed, and there
are never more of those than POSTs whose outcome went unrecorded.

PostgreSQL's fault is pg_terminate_backend on every backend of the test database, not a
restart of the server: the rest of the suite (and other helpers' suites) run on the same
server.

Reuses the submitter and sink counting of test_delivery_multiprocess.py; FAULT_MESSAGES sets
the number of messages (default 5,000).
"""
from __future__ import annotations

import collections
import json
import os
import signal
import smtplib
import time

import pytest
from django.db import connection
from django.db.models import Count

from credentials import services
from events import webhooks
from events.models import Event, WebhookAttempt, WebhookDelivery
from relay.models import Recipient
from tests.events.receiver import LOCAL, Receiver

from .sink import DROP, Sink
from .smtp_helpers import HOST, Server
from .test_delivery_multiprocess import (
    BATCH,
    PROCESSES,
    Submitter,
    expected_keys,
    send_one,
    sink_counts,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)
MESSAGES = int(os.environ.get("FAULT_MESSAGES", "5000"))
DROP_EVERY = 50  # one recipient in this many: the sink drops the connection at its RCPT
HOOK_TYPES = ["delivery", "deferral", "failure"]
HOOK_REFUSED = 30  # the receiver answers the first this many POSTs 503 (retried)


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("several delivering processes need PostgreSQL (SKIP LOCKED leases); "
                    "on SQLite one process delivers")


@pytest.fixture
def sink():
    with Sink() as sink:
        yield sink


@pytest.fixture
def receiver():
    r = Receiver()
    r.plan = [(503, {}, b"busy")] * HOOK_REFUSED
    r.delay = 0.02  # so that the killed process has POSTs in flight
    yield r
    r.close()


@pytest.fixture
def endpoint(alice, receiver):
    """alice's endpoint for the delivery events; made before the servers start, so their
    endpoint caches hold it from the first message."""
    with LOCAL:
        return webhooks.create_endpoint(alice, receiver.url, HOOK_TYPES)


@pytest.fixture
def servers(tls_files, tmp_path, sink, endpoint):
    started: list[Server] = []
    env = {"WEBHOOK_ALLOW_HTTP": "true", "WEBHOOK_ALLOW_PRIVATE": "true",
           "WEBHOOK_RETRY_FIRST": "0.5", "WEBHOOK_RETRY_MAX": "2", "WEBHOOK_LEASE": "5",
           "WEBHOOK_POLL_INTERVAL": "0.2", "WEBHOOK_TIMEOUT": "5",
           "DELIVERY_MODE": "mx", "RELAY_ROUTES": f"*={HOST}:{sink.port}",
           "DELIVERY_ALLOW_PRIVATE": "true", "DELIVERY_LEASE": "5",
           "DELIVERY_BATCH": str(BATCH), "DELIVERY_POLL_INTERVAL": "0.2",
           "DELIVERY_CONNECTION_IDLE": "2", "SMTP_OUT_CONNECT_TIMEOUT": "5",
           "DELIVERY_RETRY_FIRST": "1", "DELIVERY_RETRY_MAX": "2"}
    for _ in range(PROCESSES):
        started.append(Server(cert=tls_files[0], key=tls_files[1], workdir=tmp_path,
                              env_extra=env).start())
    yield started
    for server in started:
        server.stop(signal.SIGKILL)


class PatientSubmitter(Submitter):
    """The multiprocess submitter, as a client that also retries a message after a 4xx
    reply (the database was cut under the queue writer) or a broken connection: such a
    message may have been committed without its 250, so it is "resent" (a duplicate of it
    is allowed)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.resent: set[int] = set()

    def _run(self, index: int, seqs: list[int]) -> None:
        pending = list(seqs)
        client = None
        deadline = time.monotonic() + 300
        while pending and time.monotonic() < deadline:
            seq = pending[0]
            try:
                if client is None:
                    if index in self.dead:
                        index = next(i for i in range(len(self.servers)) if i not in self.dead)
                    client = self._connect(index)
                code, reply = send_one(client, seq)
            except (OSError, smtplib.SMTPException) as exc:
                with self.lock:
                    (self.uncertain if index in self.dead else self.resent).add(seq)
                if index not in self.dead and not isinstance(
                        exc, (smtplib.SMTPServerDisconnected, ConnectionError,
                              smtplib.SMTPResponseException)):
                    self.errors.append(f"server {index}: {type(exc).__name__}: {exc}")
                    return
                client = None
                time.sleep(0.2)
                continue
            if code == 250:
                with self.lock:
                    self.accepted.add(seq)
                pending.pop(0)
            elif 400 <= code < 500:
                with self.lock:
                    self.resent.add(seq)
                if code == 421:  # the server closes the connection
                    client = None
                else:
                    try:
                        client.rset()
                    except (OSError, smtplib.SMTPException):
                        client = None
                time.sleep(0.2)
            else:
                self.errors.append(f"seq {seq}: {code} {reply!r}")
                return
        if client is not None:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                pass
        if pending:
            self.errors.append(f"{len(pending)} message(s) not accepted in 300 s")


def terminate_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM "
                       "pg_stat_activity WHERE datname = current_database() AND "
                       "pid <> pg_backend_pid()) t")
        return cursor.fetchone()[0]


def webhook_check(receiver: Receiver, secret: str) -> str:
    """Every delivery event has exactly one webhook-id acknowledged at the receiver (none
    lost); duplicates by webhook-id counted; returns the line to print."""
    events = set(Event.objects.filter(type__in=HOOK_TYPES).values_list("pk", flat=True))
    rows = WebhookDelivery.objects.filter(event__type__in=HOOK_TYPES)
    wait_until(lambda: rows.filter(state="delivered").count() >= len(events), 120,
               "every webhook row delivered")
    assert not rows.exclude(state="delivered").exists()
    assert rows.count() == len(events)  # one outbox row per event
    requests = list(receiver.requests)
    acked = [r for r in requests if 200 <= r.status < 300]
    per_id = collections.Counter(r.headers["webhook-id"] for r in acked)
    event_of: dict[str, int] = {}
    for r in acked:
        data = r.verified(secret)["data"]  # the signature holds
        assert event_of.setdefault(r.headers["webhook-id"], data["id"]) == data["id"]
    ids_of = collections.defaultdict(set)
    for wid, event_id in event_of.items():
        ids_of[event_id].add(wid)
    lost = events - set(ids_of)
    assert not lost, f"{len(lost)} event(s) never acknowledged, e.g. {sorted(lost)[:5]}"
    assert set(ids_of) <= events, "a POST of an event that is not there"
    split = {e: w for e, w in ids_of.items() if len(w) > 1}
    assert not split, f"an event under two webhook-ids: {list(split.items())[:3]}"
    expected = {webhooks.webhook_id(pk): e for pk, e in rows.values_list("pk", "event_id")}
    assert event_of == expected
    doubled = {w: n for w, n in per_id.items() if n > 1}
    unrecorded = len(requests) - WebhookAttempt.objects.count()
    assert sum(n - 1 for n in doubled.values()) <= unrecorded, (doubled, unrecorded)
    refused = sum(1 for r in requests if r.status == 503)
    assert refused == HOOK_REFUSED
    types = collections.Counter(json.loads(r.body)["type"] for r in acked)
    return (f"webhooks: {len(events)} events ({dict(types)} acknowledged POSTs), "
            f"{len(requests)} POSTs of which {refused} answered 503 and retried; each event "
            f"acknowledged under exactly one webhook-id, none lost; {len(doubled)} webhook-id(s) "
            f"acknowledged more than once ({sum(doubled.values()) - len(doubled)} extra "
            f"POSTs; {unrecorded} POST outcome(s) never recorded: killed or cut)")


def test_faults_lose_nothing_and_double_only_what_was_in_flight(servers, sink, alice,
                                                                 receiver, endpoint):
    login, password = services.create_login(alice)
    for seq in range(0, MESSAGES, DROP_EVERY):
        sink.script[f"rcpt{seq}@d{seq % 10}.test"] = DROP
    dropped = set(sink.script)
    started = time.monotonic()
    submitter = PatientSubmitter(servers, login.username, password)
    submitter.start()
    delivered = Recipient.objects.filter(state="delivered")

    # 1. kill -9 of one process with a third delivered
    wait_until(lambda: delivered.count() >= MESSAGES // 3, 180, "a third delivered")
    victim = servers[1]
    submitter.dead.add(1)
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(10)
    killed_at = delivered.count()
    pid = f":{victim.proc.pid}:"
    held = set(Recipient.objects.filter(leased_by__contains=pid, lease_until__isnull=False)
               .exclude(state__in=["delivered", "failed"]).values_list("address", flat=True))

    # 2. every backend of the test database terminated, twice, with half delivered
    wait_until(lambda: delivered.count() >= MESSAGES // 2, 180, "half delivered")
    cut = terminate_backends()
    time.sleep(1)
    cut += terminate_backends()
    connection.close()

    # 3. the sink stops dropping once two thirds are delivered
    wait_until(lambda: delivered.count() >= 2 * MESSAGES // 3, 180, "two thirds delivered")
    sink.script.clear()

    submitter.join()
    expected = submitter.accepted
    wait_until(lambda: not Recipient.objects.exclude(state="delivered").exists()
               and delivered.count() >= len(expected), 180, "every recipient delivered")
    done = time.monotonic()
    time.sleep(1)  # a late duplicate would have arrived by now

    counts = sink_counts(sink)
    keys = set(counts)
    missing = expected_keys(expected) - keys
    assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}"
    # Unacknowledged messages (a dead server, a 4xx) may go out; nothing unknown does.
    maybe = submitter.uncertain | submitter.resent
    assert keys - expected_keys(expected) <= expected_keys(maybe)
    twice = {k: n for k, n in counts.items() if n > 1}
    in_flight = {k for k in twice if k[0] in held}
    resent = {k for k in twice if k[1] in maybe}
    assert set(twice) <= in_flight | resent, "a duplicate neither in flight nor resent: " \
        f"{sorted(set(twice) - in_flight - resent)[:5]}"
    assert len(in_flight) <= len(held) <= BATCH

    # Events: one delivery event per delivered recipient, at most one deferral each.
    doubled = (Event.objects.filter(type__in=["delivery", "deferral"])
               .values("recipient", "type").annotate(n=Count("id")).filter(n__gt=1))
    assert not doubled.exists(), list(doubled[:5])
    assert (Event.objects.filter(type="delivery").count()
            == Recipient.objects.filter(state="delivered").count())
    deferred_once = set(Event.objects.filter(type="deferral")
                        .values_list("recipient__address", flat=True))
    seen_dropped = dropped & deferred_once  # attempted before the sink stopped dropping
    assert seen_dropped, "no drop was ever seen"
    assert not Event.objects.filter(type="failure").exists()
    hooks = webhook_check(receiver, endpoint[1])
    for server in servers:
        log = server.log_text()
        assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]
    print(f"{MESSAGES} messages, {PROCESSES} processes, {done - started:.0f} s: kill -9 at "
          f"{killed_at} delivered (the dead process held {len(held)} leased); "
          f"{cut} PostgreSQL backends terminated; {len(seen_dropped)} of {len(dropped)} "
          f"scripted recipients dropped by the sink (then deferred once, delivered "
          f"later); {len(expected)} acknowledged, "
          f"{len(submitter.uncertain)} unacknowledged at the kill, {len(submitter.resent)} "
          f"sent again after a 4xx or a cut connection; sink got {sum(counts.values())} "
          f"deliveries of {len(keys)} recipients: none lost, {len(in_flight)} twice for being "
          f"in flight at the kill, {len(resent)} twice for being sent again; {hooks}")

