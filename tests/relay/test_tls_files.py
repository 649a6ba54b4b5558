"""`manage.py maketlscert` writes a certificate runsmtp serves; the AUTH cache expires after
SMTP_AUTH_CACHE_TTL (each test here runs a server of its own)."""
import smtplib
import ssl
import time
from io import StringIO

import pytest
from django.core.management import call_command

from .conftest import ACCEPT_ROLES, SERVER_ENV
from .smtp_helpers import HOST, LineClient, Server
from .test_submission import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_maketlscert_writes_a_certificate_that_runsmtp_serves(tmp_path, login):
    cert, key = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
    out = StringIO()
    call_command("maketlscert", cert=str(cert), key=str(key), stdout=out)
    assert f"Wrote {cert}" in out.getvalue()
    assert key.stat().st_mode & 0o777 == 0o600
    before = cert.read_bytes()
    call_command("maketlscert", cert=str(cert), key=str(key), stdout=StringIO())
    assert cert.read_bytes() == before  # not replaced without --force
    server = Server(cert=cert, key=key, workdir=tmp_path, env_extra=SERVER_ENV,
                    roles=ACCEPT_ROLES).start()
    try:
        ctx = ssl.create_default_context(cafile=str(cert))  # verified: name and chain
        with smtplib.SMTP_SSL(HOST, server.tls_port, context=ctx) as s:
            s.login(login[0].username, login[1])
            assert s.sock.getpeercert()["subjectAltName"]
        with smtplib.SMTP(HOST, server.starttls_port) as s:
            s.starttls(context=ctx)
            s.login(login[0].username, login[1])
    finally:
        server.stop()
    assert "Traceback" not in server.log_text()


def test_auth_cache_expires_after_its_ttl(tls_files, tmp_path, login):
    server = Server(cert=tls_files[0], key=tls_files[1], workdir=tmp_path,
                    env_extra=dict(SERVER_ENV, SMTP_AUTH_CACHE_TTL="1"),
                    roles=ACCEPT_ROLES).start()
    username = login[0].username

    def auth():
        c = LineClient(server, server.tls_port, implicit_tls=True)
        c.cmd("EHLO client.test")
        assert c.auth_plain(username, login[1]).code == 235
        c.close()

    def verified():
        return [line.rsplit("verified=", 1)[1] for line in server.log_text().splitlines()
                if f"username={username!r} verified=" in line]

    try:
        auth()
        auth()
        assert wait_for(lambda: verified() == ["argon2", "cache"]), verified()
        time.sleep(1.2)
        auth()
        assert wait_for(lambda: len(verified()) == 3)
        assert verified() == ["argon2", "cache", "argon2"]
    finally:
        server.stop()
