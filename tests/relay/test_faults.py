"""The fault test (issue 12), PostgreSQL only: three runsmtp processes with every role,
5,000 messages submitted across them to one counting sink, and during the run: kill -9 of one
process, every PostgreSQL backend of the test database terminated (twice), and the sink
dropping the connection at RCPT for one recipient in fifty until late in the run.

Afterwards every acknowledged message is delivered (none lost); the only duplicates are
recipients the dead process held leased at the kill, or messages a client sent again after a
reply it could not trust (a 4xx while the database was cut, or a server that died
mid-message), counted and printed; each delivered recipient has exactly one delivery event,
and no recipient more than one deferral event. Webhooks are not built yet: their part of the
issue's check waits for them.

Reuses the submitter and sink counting of test_delivery_multiprocess.py; FAULT_MESSAGES sets
the number of messages (default 5,000).
"""
from __future__ import annotations

import os
import signal
import smtplib
import time

import pytest
from django.db import connection
from django.db.models import Count

from credentials import services
from events.models import Event
from relay.models import Recipient

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
def servers(tls_files, tmp_path, sink):
    started: list[Server] = []
    env = {"DELIVERY_MODE": "mx", "RELAY_ROUTES": f"*={HOST}:{sink.port}",
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


def test_faults_lose_nothing_and_double_only_what_was_in_flight(servers, sink, alice):
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
          f"in flight at the kill, {len(resent)} twice for being sent again")

