"""Connections a real runsmtp keeps: a process-wide cap below its descriptor limit (421 4.7.0
and one log line a minute past it, never resets), and a short idle timeout until a session
has authenticated (submission) or greeted (mx)."""
import socket
import ssl
import threading
import time

import pytest
from django.db import connection

from .conftest import ACCEPT_ROLES, SERVER_ENV
from .smtp_helpers import HOST, LineClient, Server
from .test_submission import authed, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def start(django_db_blocker, tls_files, workdir, rlimit_nofile=None, **env) -> Server:
    with django_db_blocker.unblock():
        connection.ensure_connection()
    return Server(cert=tls_files[0], key=tls_files[1], workdir=workdir,
                  env_extra={**SERVER_ENV, **env}, rlimit_nofile=rlimit_nofile,
                  roles=ACCEPT_ROLES).start()


@pytest.fixture
def server_factory(django_db_blocker, tls_files, tmp_path):
    servers = []

    def make(**kw) -> Server:
        servers.append(start(django_db_blocker, tls_files, tmp_path, **kw))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()
        log = server.log_text()
        assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]


def cap_lines(server: Server) -> list[str]:
    return [line for line in server.log_text().splitlines() if "connection cap reached" in line]


def test_past_the_connection_cap_clients_get_421_and_one_log_line(server_factory):
    server = server_factory(SMTP_MAX_CONNECTIONS="20")
    assert "connection cap 20 (SMTP_MAX_CONNECTIONS 20" in server.log_text()
    open_ = [LineClient(server, (server.starttls_port, server.mx_port)[i % 2],
                        source_ip=f"127.0.7.{i}") for i in range(1, 20)]
    open_.append(LineClient(server, server.tls_port, implicit_tls=True, source_ip="127.0.7.20"))
    assert [c.greeting.code for c in open_] == [220] * 20
    for i in range(5):  # from addresses that have no connection yet
        c = LineClient(server, server.starttls_port, source_ip=f"127.0.8.{i}")
        assert (c.greeting.code, c.greeting.text[:6]) == (421, "4.7.0 "), c.greeting
        assert c.closed()
    # The implicit-TLS port cannot say 421 before TLS: it closes at once.
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        LineClient(server, server.tls_port, implicit_tls=True, timeout=3)
    lines = wait_for(lambda: cap_lines(server))
    assert len(lines) == 1, lines  # six refusals, one line (the next after a minute)
    assert "20 connections open" in lines[0]
    # Room again once a connection closes; the open sessions went on all along.
    open_.pop().close()
    assert wait_for(lambda: LineClient(server, server.mx_port).greeting.code == 220)
    assert all(c.cmd("NOOP").code == 250 for c in open_)


def test_the_cap_stays_below_the_descriptor_limit(server_factory):
    """With 256 descriptors, 300 connections: each gets 220 or 421, none a reset or silence."""
    server = server_factory(rlimit_nofile=256, SMTP_MAX_UNAUTH_CONNECTIONS_PER_IP="0")
    clients, codes = [], []
    for i in range(300):
        try:
            c = LineClient(server, server.starttls_port, source_ip=f"127.0.9.{1 + i // 25}",
                           timeout=3)
        except (OSError, ConnectionError) as exc:
            codes.append(type(exc).__name__)
            continue
        clients.append(c)
        codes.append(c.greeting.code)
    cap = codes.count(220)
    assert codes == [220] * cap + [421] * (300 - cap), codes
    assert 64 <= cap <= 256 - 64
    assert (f"connection cap {cap} (SMTP_MAX_CONNECTIONS 10000, descriptor limit 256)"
            in server.log_text())
    assert len(cap_lines(server)) == 1
    for c in clients:
        c.close()
    assert wait_for(lambda: LineClient(server, server.mx_port).greeting.code == 220)


def idle_times(clients: dict[str, tuple[LineClient, float]]) -> dict[str, float]:
    """Seconds from each client's last command until it is sent 421 4.4.2 (read in
    parallel)."""
    times = {}

    def wait(name: str, c: LineClient, since: float) -> None:
        r = c.reply()
        assert (r.code, r.text[:6]) == (421, "4.4.2 "), r
        times[name] = time.monotonic() - since

    threads = [threading.Thread(target=wait, args=(name, *item))
               for name, item in clients.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times


def test_sessions_without_auth_get_a_shorter_idle_timeout(server_factory, login):
    server = server_factory(SMTP_PREAUTH_IDLE_TIMEOUT="2", SMTP_IDLE_TIMEOUT="8")
    clients = {}
    c = authed(server, login, timeout=15)
    clients["submitter"] = (c, time.monotonic())
    clients["silent"] = (LineClient(server, server.starttls_port, timeout=15), time.monotonic())
    c = LineClient(server, server.tls_port, implicit_tls=True, timeout=15)
    c.cmd("EHLO client.test")
    clients["greeted"] = (c, time.monotonic())
    clients["mx silent"] = (LineClient(server, server.mx_port, timeout=15), time.monotonic())
    c = LineClient(server, server.mx_port, timeout=15)
    c.cmd("EHLO mta.example.net")
    clients["mx greeted"] = (c, time.monotonic())
    times = idle_times(clients)
    # Before AUTH (mx: before EHLO): 2 s. After AUTH (mx: after EHLO): 8 s.
    assert all(1.5 < times[k] < 5 for k in ("silent", "greeted", "mx silent")), times
    assert all(7 < times[k] < 12 for k in ("submitter", "mx greeted")), times
    for c, _ in clients.values():
        assert c.closed()


def test_a_flood_of_connections_leaves_room_after_the_short_timeout(server_factory):
    server = server_factory(SMTP_MAX_CONNECTIONS="10", SMTP_PREAUTH_IDLE_TIMEOUT="1")
    idle = [socket.create_connection((HOST, server.starttls_port)) for _ in range(10)]
    time.sleep(0.2)
    assert LineClient(server, server.starttls_port).greeting.code == 421
    # The idle ones are closed after a second; then a client gets in.
    assert wait_for(lambda: LineClient(server, server.starttls_port).greeting.code == 220)
    for s in idle:
        s.close()
