"""TLS handshakes that fail (the client rejects our certificate, speaks an old TLS version,
or never starts) and connections that never handshake: one INFO line, a close, no traceback,
and the per-IP cap counts them from TCP accept."""
import socket
import ssl
import time

import pytest

from relay.tls import write_self_signed

from .smtp_helpers import HOST, LineClient, old_tls_context
from .test_submission import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def foreign_ca(tmp_path_factory):
    """A client context that trusts another CA only: it rejects the server's certificate."""
    d = tmp_path_factory.mktemp("foreign")
    write_self_signed(d / "cert.pem", d / "key.pem", ["127.0.0.1"])
    return ssl.create_default_context(cafile=str(d / "cert.pem"))


def _connect(port, source_ip):
    return socket.create_connection((HOST, port), timeout=5, source_address=(source_ip, 0))


def _log_lines(server, needle):
    return [line for line in server.log_text().splitlines() if needle in line]


def test_client_rejecting_the_certificate_after_starttls(smtp_server, foreign_ca):
    c = LineClient(smtp_server, smtp_server.starttls_port, source_ip="127.0.0.81")
    c.cmd("EHLO client.test")
    assert c.cmd("STARTTLS").code == 220
    with pytest.raises(ssl.SSLCertVerificationError):
        foreign_ca.wrap_socket(c.sock, server_hostname=HOST)
    lines = wait_for(lambda: _log_lines(smtp_server, "TLS handshake failed (STARTTLS) from "
                                                      "127.0.0.81"))
    assert len(lines) == 1 and "INFO" in lines[0] and "UNKNOWN_CA" in lines[0], lines
    assert not _log_lines(smtp_server, "session error from 127.0.0.81")


def test_client_rejecting_the_certificate_on_implicit_tls(smtp_server, foreign_ca):
    sock = _connect(smtp_server.tls_port, "127.0.0.82")
    with pytest.raises(ssl.SSLCertVerificationError):
        foreign_ca.wrap_socket(sock, server_hostname=HOST)
    lines = wait_for(lambda: _log_lines(smtp_server, "TLS handshake failed (implicit TLS) from "
                                                      "127.0.0.82"))
    assert len(lines) == 1 and "INFO" in lines[0] and "UNKNOWN_CA" in lines[0], lines


def test_old_tls_and_plain_text_on_the_implicit_tls_port_are_logged(smtp_server):
    ctx = old_tls_context(smtp_server)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        ctx.wrap_socket(_connect(smtp_server.tls_port, "127.0.0.83"), server_hostname=HOST)
    sock = _connect(smtp_server.tls_port, "127.0.0.84")
    sock.sendall(b"EHLO plain.text.client\r\n")
    assert sock.recv(100) == b""  # closed, no reply in plain text
    for ip in ("127.0.0.83", "127.0.0.84"):
        assert wait_for(lambda ip=ip: _log_lines(smtp_server, f"TLS handshake failed "
                                                              f"(implicit TLS) from {ip}"))


def test_a_silent_connection_is_closed_after_the_handshake_timeout(smtp_server):
    sock = _connect(smtp_server.tls_port, "127.0.0.85")
    started = time.monotonic()
    assert sock.recv(100) == b""
    assert 1.5 < time.monotonic() - started < 4  # SMTP_TLS_HANDSHAKE_TIMEOUT=2 in the tests
    assert wait_for(lambda: _log_lines(smtp_server, "TLS handshake failed (implicit TLS) from "
                                                    "127.0.0.85"))


def test_failed_handshakes_give_their_connection_slot_back(smtp_server, foreign_ca):
    for i in range(35):  # more than the cap (30) of this IP
        if i % 2:
            c = LineClient(smtp_server, smtp_server.starttls_port, source_ip="127.0.0.86")
            c.cmd("STARTTLS")
            sock = c.sock
        else:
            sock = _connect(smtp_server.tls_port, "127.0.0.86")
        with pytest.raises(ssl.SSLError):
            foreign_ca.wrap_socket(sock, server_hostname=HOST)
        sock.close()
    assert wait_for(lambda: LineClient(smtp_server, smtp_server.tls_port, implicit_tls=True,
                                       source_ip="127.0.0.86").greeting.code == 220)


def test_connection_cap_counts_implicit_tls_before_the_handshake(smtp_server):
    silent = [_connect(smtp_server.tls_port, "127.0.0.87") for _ in range(30)]
    extra = _connect(smtp_server.tls_port, "127.0.0.87")
    extra.settimeout(1)
    started = time.monotonic()
    assert extra.recv(100) == b""  # closed at once, not held until a handshake timeout
    assert time.monotonic() - started < 0.5
    assert wait_for(lambda: _log_lines(smtp_server, "refused connection from 127.0.0.87 (tls "
                                                    "port): too many connections"))
    # Other addresses are served; a freed slot serves this one again.
    assert LineClient(smtp_server, smtp_server.tls_port, implicit_tls=True,
                      source_ip="127.0.0.88").greeting.code == 220
    silent.pop().close()
    assert wait_for(lambda: LineClient(smtp_server, smtp_server.tls_port, implicit_tls=True,
                                       source_ip="127.0.0.87").greeting.code == 220)
    for s in silent:
        s.close()
