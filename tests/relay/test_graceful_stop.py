"""SIGTERM on a real runsmtp: new connections and new transactions get 421 4.3.2, the open
session finishes its message, a delivery in flight finishes (or, past SMTP_STOP_GRACE, its
lease is given back at once), and the process exits 0."""
import signal
import time

import pytest

from credentials import services
from relay.models import Message, Recipient

from .conftest import ACCEPT_ROLES, SERVER_ENV
from .smtp_helpers import LineClient, Server
from .test_delivery_mx import dns_server, mx_env, sink, submit, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["dns_server", "sink"]  # module fixtures of this module too


@pytest.fixture
def servers(tls_files, tmp_path):
    started = []

    def start(roles=ACCEPT_ROLES, **env):
        server = Server(cert=tls_files[0], key=tls_files[1], workdir=tmp_path, roles=roles,
                        env_extra={**SERVER_ENV, **env})
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop(signal.SIGKILL)


def _wait_log(server: Server, text: str, timeout: float = 10) -> None:
    wait_for(lambda: text in server.log_text(), timeout, what=repr(text))


def _authed(server: Server, login, password) -> LineClient:
    c = LineClient(server, server.starttls_port)
    assert c.cmd("EHLO client.test").code == 250
    c.starttls()
    assert c.cmd("EHLO client.test").code == 250
    assert c.auth_plain(login.username, password).code == 235
    return c


def test_sigterm_refuses_new_work_with_421_and_lets_the_open_session_finish(servers, alice):
    login, password = services.create_login(alice)
    server = servers(SMTP_STOP_GRACE="20")
    client = _authed(server, login, password)
    for line, code in (("MAIL FROM:<app@example.com>", 250), ("RCPT TO:<bob@example.org>", 250),
                       ("DATA", 354)):
        assert client.cmd(line).code == code
    client.send(b"Subject: half way\r\n\r\nfirst part\r\n")

    server.proc.send_signal(signal.SIGTERM)
    _wait_log(server, "runsmtp stopping")
    late = LineClient(server, server.starttls_port)
    assert late.greeting.code == 421 and late.greeting.text.startswith("4.3.2 "), late.greeting
    assert late.closed()
    assert server.proc.poll() is None  # still draining: the session is open

    client.send(b"second part\r\n.\r\n")
    reply = client.reply()
    assert reply.code == 250 and "queued as" in reply.text
    refused = client.cmd("MAIL FROM:<app@example.com>")  # a new transaction: elsewhere
    assert refused.code == 421 and refused.text.startswith("4.3.2 "), refused
    assert client.closed()

    assert server.proc.wait(10) == 0
    [message] = Message.objects.all()
    assert bytes(message.raw).endswith(b"first part\r\nsecond part\r\n")
    log = server.log_text()
    assert "refused connection from 127.0.0.1 (starttls port): shutting down" in log
    assert "every SMTP session has ended" in log and "runsmtp stopped" in log
    assert "Traceback" not in log


def test_a_session_open_past_the_grace_period_is_cut_and_the_process_exits_0(servers, alice):
    login, password = services.create_login(alice)
    server = servers(SMTP_STOP_GRACE="1")
    client = _authed(server, login, password)  # and then idle
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0
    assert time.monotonic() - started >= 1  # the session had its grace period
    assert client.closed()
    assert "grace period over: closing 1 SMTP session(s) still open" in server.log_text()


def _delivery(tls_files, tmp_path, dns_server, sink, **env) -> Server:
    return Server(cert=tls_files[0], key=tls_files[1], workdir=tmp_path, roles="delivery",
                  env_extra=mx_env(dns_server, sink, DELIVERY_POLL_INTERVAL="0.2", **env)).start()


def test_sigterm_lets_a_delivery_in_flight_finish(servers, tls_files, tmp_path, dns_server,
                                                   sink, alice):
    login, password = services.create_login(alice)
    intake = servers()
    [queue_id] = submit(intake, login, password, ["dataslow1.5-g@sink.test"], "graceful")
    before = len(sink.received)
    worker = _delivery(tls_files, tmp_path, dns_server, sink, SMTP_STOP_GRACE="20")
    try:
        leased = Recipient.objects.filter(message__queue_id=queue_id).exclude(leased_by="")
        wait_for(leased.exists, what="the claim")
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(20) == 0
    finally:
        worker.stop(signal.SIGKILL)
    rcpt = Recipient.objects.get(message__queue_id=queue_id)
    assert (rcpt.state, rcpt.leased_by) == ("delivered", "")
    assert len(sink.received) == before + 1
    assert "unfinished" not in worker.log_text()


def test_past_the_grace_period_a_delivery_is_given_back_for_another_process(
        servers, tls_files, tmp_path, dns_server, sink, alice):
    login, password = services.create_login(alice)
    intake = servers()
    [queue_id] = submit(intake, login, password, ["dataslow4-h@sink.test"], "cut short")
    worker = _delivery(tls_files, tmp_path, dns_server, sink, SMTP_STOP_GRACE="0.5",
                       DELIVERY_LEASE="600")
    rcpts = Recipient.objects.filter(message__queue_id=queue_id)
    try:
        wait_for(rcpts.exclude(leased_by="").exists, what="the claim")
        time.sleep(0.3)  # the transaction is on the wire: DATA is answered after 4 s
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(15) == 0  # without waiting for the reply, as the state says
    finally:
        worker.stop(signal.SIGKILL)
    rcpt = rcpts.get()
    # Given back, not left to a 600 s lease: another process may claim it now.
    assert (rcpt.state, rcpt.leased_by, rcpt.lease_until) == ("queued", "", None)
    assert "given back to the queue" in worker.log_text()
