"""Three runsmtp processes with every role against one PostgreSQL database deliver each
recipient exactly once: mail submitted across them (several connections each, many messages per
connection, an X-Seq header per message) reaches one counting sink (RELAY_ROUTES=*=sink), none
lost, none twice. With a kill -9 of one process after about a third is delivered, its leases
expire (DELIVERY_LEASE) and the others deliver the rest: nothing lost, and the only duplicates
are recipients the dead process held leased at the kill (counted and printed).

MULTIPROCESS_MESSAGES sets the number of messages (default 5,000).
"""
from __future__ import annotations

import collections
import os
import re
import signal
import smtplib
import threading
import time

import pytest
from django.db import connection

from credentials import services
from relay.models import Recipient

from .sink import Sink
from .smtp_helpers import HOST, Server

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = int(os.environ.get("MULTIPROCESS_MESSAGES", "5000"))
PROCESSES = 3
CONNECTIONS_PER_PROCESS = 2
BATCH = 100  # DELIVERY_BATCH: the most one process can hold leased
SEQ = re.compile(rb"^X-Seq: (\d+)\r?$", re.MULTILINE)


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

    def start() -> list[Server]:
        env = {"DELIVERY_MODE": "mx", "RELAY_ROUTES": f"*={HOST}:{sink.port}",
               "DELIVERY_ALLOW_PRIVATE": "true", "DELIVERY_LEASE": "5",
               "DELIVERY_BATCH": str(BATCH), "DELIVERY_POLL_INTERVAL": "0.2",
               "DELIVERY_CONNECTION_IDLE": "2", "SMTP_OUT_CONNECT_TIMEOUT": "5"}
        for _ in range(PROCESSES):
            server = Server(cert=tls_files[0], key=tls_files[1], workdir=tmp_path,
                            env_extra=env)
            started.append(server.start())
        return started

    yield start
    for server in started:
        server.stop(signal.SIGKILL)
    for server in started:
        log = server.log_text()
        assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]


def body(seq: int) -> bytes:
    return (f"From: app@example.com\r\nTo: rcpt{seq}@d{seq % 10}.test\r\n"
            f"Subject: multiprocess {seq}\r\nX-Seq: {seq}\r\n\r\nHello {seq}.\r\n").encode()


class Submitter:
    """Threads, each one TLS + AUTH connection sending its share of the messages; a thread
    whose server dies goes on through the next live server (as a client would), leaving the
    message it was sending uncertain (maybe committed, never acknowledged)."""

    def __init__(self, servers: list[Server], username: str, password: str):
        self.servers = servers
        self.username, self.password = username, password
        self.accepted: set[int] = set()
        self.uncertain: set[int] = set()
        self.lock = threading.Lock()
        self.errors: list[str] = []
        self.dead: set[int] = set()  # indexes of killed servers
        shares = collections.defaultdict(list)
        threads = len(servers) * CONNECTIONS_PER_PROCESS
        for seq in range(MESSAGES):
            shares[seq % threads].append(seq)
        self.threads = [threading.Thread(target=self._run, args=(i % len(servers), shares[i]))
                        for i in range(threads)]

    def _connect(self, index: int) -> smtplib.SMTP_SSL:
        server = self.servers[index]
        client = smtplib.SMTP_SSL(HOST, server.tls_port, context=server.client_context(),
                                  timeout=30)
        client.login(self.username, self.password)
        return client

    def _run(self, index: int, seqs: list[int]) -> None:
        pending = list(seqs)
        while pending:
            try:
                client = self._connect(index)
                while pending:
                    seq = pending[0]
                    code, reply = send_one(client, seq)
                    if code != 250:
                        raise AssertionError(f"seq {seq}: {code} {reply!r}")
                    with self.lock:
                        self.accepted.add(seq)
                    pending.pop(0)
                client.quit()
            except (OSError, smtplib.SMTPException) as exc:
                if index not in self.dead:
                    self.errors.append(f"server {index}: {type(exc).__name__}: {exc}")
                    return
                with self.lock:
                    self.uncertain.add(pending.pop(0))
                index = next(i for i in range(len(self.servers)) if i not in self.dead)
            except AssertionError as exc:
                self.errors.append(str(exc))
                return

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        for t in self.threads:
            t.join(120)
        assert not any(t.is_alive() for t in self.threads), "submission hangs"
        assert not self.errors, self.errors[:5]


def send_one(client: smtplib.SMTP, seq: int) -> tuple[int, bytes]:
    code, reply = client.mail("app@example.com")
    if code != 250:
        return code, reply
    code, reply = client.rcpt(f"rcpt{seq}@d{seq % 10}.test")
    if code != 250:
        return code, reply
    return client.data(body(seq))


def sink_counts(sink: Sink) -> collections.Counter:
    """(recipient, X-Seq) -> how many times the sink got it."""
    counts: collections.Counter = collections.Counter()
    for tx in list(sink.received):
        seq = int(SEQ.search(tx.data).group(1))
        for rcpt in tx.rcpt_tos:
            counts[(rcpt, seq)] += 1
    return counts


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def expected_keys(seqs) -> set[tuple[str, int]]:
    return {(f"rcpt{seq}@d{seq % 10}.test", seq) for seq in seqs}


def test_three_processes_deliver_each_recipient_once(servers, sink, alice):
    login, password = services.create_login(alice)
    procs = servers()
    started = time.monotonic()
    submitter = Submitter(procs, login.username, password)
    submitter.start()
    submitter.join()
    submitted = time.monotonic()
    assert submitter.accepted == set(range(MESSAGES))
    delivered = Recipient.objects.filter(state="delivered")
    wait_until(lambda: delivered.count() >= MESSAGES, 120, "every recipient delivered")
    done = time.monotonic()
    assert not Recipient.objects.exclude(state="delivered").exists()
    time.sleep(1)  # a late duplicate would have arrived by now
    counts = sink_counts(sink)
    assert set(counts) == expected_keys(range(MESSAGES))  # none lost, none unknown
    twice = {k: n for k, n in counts.items() if n > 1}
    assert not twice, f"{len(twice)} delivered more than once, e.g. {list(twice)[:5]}"
    print(f"{MESSAGES} messages through {PROCESSES} processes: submitted in "
          f"{submitted - started:.1f} s, all delivered after {done - started:.1f} s; "
          f"sink got {sum(counts.values())}, duplicates 0")


def test_kill_9_of_one_process_loses_nothing(servers, sink, alice):
    login, password = services.create_login(alice)
    procs = servers()
    victim = procs[1]
    submitter = Submitter(procs, login.username, password)
    submitter.start()
    delivered = Recipient.objects.filter(state="delivered")
    wait_until(lambda: delivered.count() >= MESSAGES // 3, 120, "a third delivered")
    submitter.dead.add(1)
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(10)
    killed_at = delivered.count()
    pid = f":{victim.proc.pid}:"
    held_addresses = set(
        Recipient.objects.filter(leased_by__contains=pid, lease_until__isnull=False)
        .exclude(state__in=["delivered", "failed"]).values_list("address", flat=True))
    submitter.join()
    expected = submitter.accepted
    wait_until(lambda: not Recipient.objects.exclude(state="delivered").exists()
               and delivered.count() >= len(expected), 120, "every recipient delivered")
    time.sleep(1)
    counts = sink_counts(sink)
    keys = set(counts)
    missing = expected_keys(expected) - keys
    assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}"
    # A message the dead process committed but never acknowledged may go out; nothing else.
    assert keys - expected_keys(expected) <= expected_keys(submitter.uncertain)
    twice = {k: n for k, n in counts.items() if n > 1}
    assert all(n == 2 for n in twice.values()), twice
    assert {rcpt for rcpt, _ in twice} <= held_addresses, "a duplicate the dead process " \
        "did not hold"
    assert len(twice) <= len(held_addresses) <= BATCH
    print(f"kill -9 at {killed_at}/{MESSAGES} delivered: the dead process held "
          f"{len(held_addresses)} recipient(s) leased; {len(expected)} acknowledged, "
          f"{len(submitter.uncertain)} unacknowledged at the kill; sink got "
          f"{sum(counts.values())} deliveries of {len(keys)} recipients: none lost, "
          f"{len(twice)} delivered twice")
