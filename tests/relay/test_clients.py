"""Submission with the clients people use: swaks and curl, over both kinds of TLS."""
import subprocess

import pytest

from relay.models import Message

from .smtp_helpers import HOST, require_tool

pytestmark = pytest.mark.django_db(transaction=True)


def run(args, timeout=30):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def test_swaks_starttls_auth_login(smtp_server, login):
    swaks = require_tool("swaks")
    out = run([
        swaks, "--server", f"{HOST}:{smtp_server.starttls_port}", "--tls",
        "--auth", "LOGIN", "--auth-user", login[0].username, "--auth-password", login[1],
        "--from", "app@example.com", "--to", "bob@example.org",
        "--header", "Subject: from swaks", "--body", "swaks body",
    ])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "250 2.0.0 Ok: queued as" in out.stdout
    message = Message.objects.get()
    assert b"Subject: from swaks" in bytes(message.raw)
    assert message.recipients.get().address == "bob@example.org"


def test_swaks_implicit_tls_auth_plain_pipelined(smtp_server, login):
    swaks = require_tool("swaks")
    out = run([
        swaks, "--server", f"{HOST}:{smtp_server.tls_port}", "--tlsc",
        "--auth", "PLAIN", "--auth-user", login[0].username, "--auth-password", login[1],
        "--from", "app@example.com", "--to", "bob@example.org",
        "--quit-after", "RCPT", "--pipeline",
    ])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "235 2.7.0" in out.stdout


def test_swaks_bad_password_gets_535(smtp_server, login):
    swaks = require_tool("swaks")
    out = run([
        swaks, "--server", f"{HOST}:{smtp_server.tls_port}", "--tlsc",
        "--auth", "PLAIN", "--auth-user", login[0].username, "--auth-password", "nope",
        "--from", "app@example.com", "--to", "bob@example.org",
    ])
    assert out.returncode != 0
    assert "535 5.7.8" in out.stdout


def test_curl_smtps_implicit_tls(smtp_server, login, tmp_path):
    curl = require_tool("curl")
    mail = tmp_path / "mail.txt"
    mail.write_bytes(b"From: app@example.com\r\nTo: bob@example.org\r\nSubject: from curl\r\n\r\n"
                     b"curl body\r\n")
    out = run([
        curl, "--silent", "--show-error", f"smtps://{HOST}:{smtp_server.tls_port}",
        "--cacert", str(smtp_server.cert), "--ssl-reqd",
        "--user", f"{login[0].username}:{login[1]}", "--login-options", "AUTH=PLAIN",
        "--mail-from", "app@example.com", "--mail-rcpt", "bob@example.org",
        "--upload-file", str(mail),
    ])
    assert out.returncode == 0, out.stderr
    assert bytes(Message.objects.get().raw).endswith(mail.read_bytes())


def test_curl_starttls_with_ssl_reqd(smtp_server, login, tmp_path):
    curl = require_tool("curl")
    mail = tmp_path / "mail.txt"
    mail.write_bytes(b"Subject: curl starttls\r\n\r\nbody\r\n")
    out = run([
        curl, "--silent", "--show-error", f"smtp://{HOST}:{smtp_server.starttls_port}",
        "-k", "--ssl-reqd", "--user", f"{login[0].username}:{login[1]}",
        "--login-options", "AUTH=LOGIN",
        "--mail-from", "", "--mail-rcpt", "bob@example.org", "--upload-file", str(mail),
    ])
    assert out.returncode == 0, out.stderr
    message = Message.objects.get()
    assert message.mail_from == "" and message.tls_version.startswith("TLSv1.")
