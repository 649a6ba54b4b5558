"""runsmtp as a process: kill -9 loses nothing acknowledged, SIGHUP reloads the certificate,
`mailq` shows the queue."""
import hashlib
import json
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from relay.models import Message
from relay.tls import write_self_signed

from .conftest import ACCEPT_ROLES, SERVER_ENV
from .smtp_helpers import HOST, ROOT, Server, database_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def own_server(tls_files, tmp_path):
    """A server of this test's own, with certificate files it may replace."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(tls_files[0], cert)
    shutil.copy(tls_files[1], key)
    servers = []

    def start(**ports):
        server = Server(cert=cert, key=key, workdir=tmp_path, env_extra=SERVER_ENV,
                        roles=ACCEPT_ROLES, **ports)
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop(signal.SIGKILL)


def test_kill_9_after_250_loses_nothing(own_server, login):
    server = own_server()
    # 8-bit bytes, a dot-stuffed line, trailing spaces: all must come back unchanged.
    body = (b"Subject: durable\r\nContent-Type: text/plain; charset=latin-1\r\n\r\n"
            b"caf\xe9 \r\n.leading dot\r\ntrailing   \r\n" + (b"z" * 500 + b"\r\n") * 10)
    with smtplib.SMTP_SSL(HOST, server.tls_port, context=server.client_context()) as s:
        s.login(login[0].username, login[1])
        s.mail("app@example.com", ["BODY=8BITMIME"])
        s.rcpt("bob@example.org", ["NOTIFY=FAILURE"])
        code, reply = s.data(body)
        assert code == 250
        server.proc.send_signal(signal.SIGKILL)  # at once, before QUIT
    server.proc.wait(10)
    queue_id = reply.decode().rsplit(" ", 1)[1]
    restarted = own_server(tls_port=server.tls_port, starttls_port=server.starttls_port,
                           mx_port=server.mx_port)
    message = Message.objects.get(queue_id=queue_id)
    raw = bytes(message.raw)
    assert raw.endswith(b"\r\n" + body) and raw.startswith(b"Received: ")
    assert message.body == "8BITMIME"
    out = StringIO()
    call_command("mailq", "--json", stdout=out)
    listed = json.loads(out.getvalue())["messages"]
    assert [(m["queue_id"], m["recipients"][0]["state"], m["recipients"][0]["notify"])
            for m in listed] == [(queue_id, "queued", "FAILURE")]
    # And the restarted server takes mail again on the same ports.
    with smtplib.SMTP_SSL(HOST, restarted.tls_port, context=server.client_context()) as s:
        s.login(login[0].username, login[1])
        s.sendmail("app@example.com", ["bob@example.org"], b"Subject: again\r\n\r\nx\r\n")
    assert Message.objects.count() == 2


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_each_event_loop_takes_mail_over_implicit_tls_and_starttls(tls_files, tmp_path, login,
                                                                   loop):
    server = Server(cert=tls_files[0], key=tls_files[1], workdir=tmp_path,
                    env_extra={**SERVER_ENV, "SMTP_EVENT_LOOP": loop},
                    roles=ACCEPT_ROLES).start()
    try:
        with smtplib.SMTP_SSL(HOST, server.tls_port, context=server.client_context()) as s:
            s.login(login[0].username, login[1])
            s.sendmail("app@example.com", ["bob@example.org"], b"Subject: one\r\n\r\nx\r\n")
        with smtplib.SMTP(HOST, server.starttls_port) as s:
            s.starttls(context=server.client_context())
            s.login(login[0].username, login[1])
            s.sendmail("app@example.com", ["bob@example.org"], b"Subject: two\r\n\r\nx\r\n")
    finally:
        server.stop()
    assert sorted(bytes(m.raw).split(b"Subject: ")[1][:3] for m in Message.objects.all()) == [
        b"one", b"two"]
    assert f"({loop} event loop)" in server.log_text()


def test_an_unknown_event_loop_is_refused_at_start(tls_files, tmp_path):
    server = Server(cert=tls_files[0], key=tls_files[1], workdir=tmp_path,
                    env_extra={**SERVER_ENV, "SMTP_EVENT_LOOP": "trio"})
    with pytest.raises(RuntimeError, match="configuration error: SMTP_EVENT_LOOP='trio' is not "
                       "valid: expected one of uvloop, asyncio") as refused:
        server.start()
    assert "Traceback" not in str(refused.value)


def _fingerprint(port: int, starttls: bool = False) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if starttls:
        s = smtplib.SMTP(HOST, port, timeout=10)
        s.starttls(context=ctx)
        der = s.sock.getpeercert(binary_form=True)
        s.quit()
    else:
        with ctx.wrap_socket(socket.create_connection((HOST, port), timeout=10)) as sock:
            der = sock.getpeercert(binary_form=True)
    return hashlib.sha256(der).hexdigest()


def _wait_log(server: Server, text: str, count: int = 1) -> None:
    deadline = time.monotonic() + 10
    while server.log_text().count(text) < count:
        assert time.monotonic() < deadline, server.log_text()
        time.sleep(0.05)


def test_sighup_reloads_the_certificate_without_dropping_sessions(own_server, login):
    server = own_server()
    before = _fingerprint(server.tls_port)
    ctx = ssl.create_default_context(cafile=str(server.cert))
    open_session = smtplib.SMTP_SSL(HOST, server.tls_port, context=ctx)
    open_session.login(login[0].username, login[1])

    write_self_signed(server.cert, server.key, ["relay.test", "127.0.0.1"])
    server.proc.send_signal(signal.SIGHUP)
    _wait_log(server, "certificate reloaded")
    after = _fingerprint(server.tls_port)
    assert after != before
    assert _fingerprint(server.starttls_port, starttls=True) == after
    # The session opened before the reload goes on with its own certificate.
    assert open_session.noop()[0] == 250
    open_session.sendmail("app@example.com", ["bob@example.org"], b"Subject: x\r\n\r\ny\r\n")
    open_session.quit()
    assert Message.objects.count() == 1

    # A broken file is refused and the certificate in use stays.
    server.cert.write_text("not a certificate")
    server.proc.send_signal(signal.SIGHUP)
    _wait_log(server, "certificate reload failed")
    assert _fingerprint(server.tls_port) == after
    assert server.proc.poll() is None


def test_mailq_text_and_json(smtp_server, login, alice):
    out = StringIO()
    call_command("mailq", stdout=out)
    assert out.getvalue().strip() == "Mail queue is empty"
    with smtplib.SMTP_SSL(HOST, smtp_server.tls_port, context=smtp_server.client_context()) as s:
        s.login(login[0].username, login[1])
        s.sendmail("", ["a@example.org", "b@example.org"], b"Subject: q\r\n\r\nx\r\n",
                   mail_options=["RET=HDRS", "ENVID=Env+2B1"])
    message = Message.objects.get()
    message.recipients.filter(address="b@example.org").update(
        state="deferred", attempts=1, last_response="451 4.7.1 try later")
    out = StringIO()
    call_command("mailq", stdout=out)
    text = out.getvalue()
    assert message.queue_id in text and "<>" in text
    assert "a@example.org [queued]" in text and "b@example.org [deferred]" in text
    assert "(451 4.7.1 try later)" in text and "in 1 Request." in text
    out = StringIO()
    call_command("mailq", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["count"] == 1
    row = data["messages"][0]
    assert (row["queue_id"], row["mail_from"], row["ret"], row["envid"], row["login"]) == (
        message.queue_id, "", "HDRS", "Env+1", login[0].username)
    assert [(r["address"], r["state"], r["attempts"]) for r in row["recipients"]] == [
        ("a@example.org", "queued", 0), ("b@example.org", "deferred", 1)]
    message.recipients.update(state="delivered")
    out = StringIO()
    call_command("mailq", "--json", stdout=out)
    assert json.loads(out.getvalue())["count"] == 0
    out = StringIO()
    call_command("mailq", "--json", "--all", stdout=out)
    assert json.loads(out.getvalue())["count"] == 1


@pytest.mark.parametrize("value", ["-1", "0", "ten"])
def test_mailq_limit_takes_only_a_positive_count(value):
    with pytest.raises(CommandError, match="--limit"):
        call_command("mailq", "--limit", value)
    # From the command line: a usage error and exit status 2, no traceback.
    proc = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "mailq", "--limit", value],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "DATABASE_URL": database_url()},
    )
    assert proc.returncode == 2, proc.stderr
    assert "--limit" in proc.stderr and "Traceback" not in proc.stderr


def test_mailq_limit_lists_at_most_that_many(smtp_server, login):
    with smtplib.SMTP_SSL(HOST, smtp_server.tls_port, context=smtp_server.client_context()) as s:
        s.login(login[0].username, login[1])
        for i in range(3):
            s.sendmail("app@example.com", ["bob@example.org"], f"Subject: {i}\r\n\r\nx\r\n")
    out = StringIO()
    call_command("mailq", "--json", "--limit", "2", stdout=out)
    assert json.loads(out.getvalue())["count"] == 2
