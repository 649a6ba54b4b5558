"""Wake-up across processes (PostgreSQL LISTEN/NOTIFY): mail accepted by a runsmtp with only
the submission role is delivered by another with only the delivery role at once, although
both poll only every DELIVERY_POLL_INTERVAL = 60 s; and mail committed without a NOTIFY (as
while the listening connection is down) is still delivered by the poll."""
from __future__ import annotations

import smtplib
import time

import pytest
from django.db import connection

from relay import queue_writer
from relay.queue_writer import Submission, write_batch

from .sink import Sink
from .smtp_helpers import HOST, Server

pytestmark = pytest.mark.django_db(transaction=True)
LONG_POLL = "60"  # seconds: a message waiting for the poll would miss the test's deadline
PROMPT = 10  # seconds from "250" to the sink: generous for a loaded CI machine, far below 60


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("NOTIFY crosses processes on PostgreSQL; on SQLite one process delivers "
                    "and wakes its own worker")


@pytest.fixture
def sink():
    with Sink() as sink:
        yield sink


@pytest.fixture
def start(tls_files, tmp_path, sink):
    started: list[Server] = []

    def start(roles: str, poll: str = LONG_POLL) -> Server:
        env = {"DELIVERY_MODE": "mx", "RELAY_ROUTES": f"*={HOST}:{sink.port}",
               "DELIVERY_ALLOW_PRIVATE": "true", "DELIVERY_POLL_INTERVAL": poll}
        server = Server(cert=tls_files[0], key=tls_files[1], workdir=tmp_path,
                        env_extra=env, roles=roles)
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()
    for server in started:
        log = server.log_text()
        assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]


def submit(server: Server, login, seq: int) -> float:
    """One message through server's submission port; the time of its "250"."""
    user, password = login[0].username, login[1]
    with smtplib.SMTP_SSL(HOST, server.tls_port, context=server.client_context(),
                          timeout=30) as client:
        client.login(user, password)
        client.sendmail("app@example.com", [f"rcpt{seq}@wake.test"],
                        f"Subject: wake {seq}\r\nX-Seq: {seq}\r\n\r\nhello\r\n".encode())
        return time.monotonic()


def arrival(sink: Sink, count: int, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while len(sink.received) < count:
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)
    return time.monotonic()


def test_mail_accepted_by_one_process_is_delivered_by_another_without_waiting_for_the_poll(
        start, sink, login):
    accepting = start("submission")
    delivering = start("delivery")
    time.sleep(1.5)  # its first claim found nothing: it now waits for a NOTIFY or 60 s
    for seq in range(3):  # the first and the later ones: the listener stays listening
        accepted = submit(accepting, login, seq)
        got = arrival(sink, seq + 1, PROMPT)
        assert got is not None, (f"message {seq} not delivered within {PROMPT} s of its 250:\n"
                                 + delivering.log_text()[-3000:])
        print(f"message {seq}: 250 -> sink in {1000 * (got - accepted):.0f} ms")
    assert [t.rcpt_tos for t in sink.received] == [[f"rcpt{i}@wake.test"] for i in range(3)]


def test_without_a_notify_the_poll_still_delivers(start, sink, login, monkeypatch):
    # A commit without NOTIFY (as while a listening connection is down): mail written into
    # the queue by this test with announce_new_mail silenced is found by the 2 s poll.
    delivering = start("delivery", poll="2")
    time.sleep(1)
    sub = Submission(queue_id="WAKEPOLL01", kind="submission", login_id=None,
                     owner_id=login[0].owner_id, mail_from="app@example.com", ret="",
                     envid="", body="", client_ip=None, helo="", tls_version="",
                     raw=b"Subject: poll\r\n\r\nhello\r\n",
                     recipients=[("poll@wake.test", "", "")])
    monkeypatch.setattr(queue_writer, "announce_new_mail", lambda: None)
    write_batch([sub], set())
    assert arrival(sink, 1, 15) is not None, delivering.log_text()[-3000:]
    assert sink.received[0].rcpt_tos == ["poll@wake.test"]
