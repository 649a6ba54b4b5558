"""Random and mutated command lines against a real runsmtp, on both event loops, over implicit
TLS, STARTTLS and the plain mx port: whatever arrives, the log holds no traceback and a
legitimate client is answered promptly afterwards.

Seeded (the seed is in each failure message), with a fixed number of sessions per port and a
wall-clock cap, so the test takes the same few seconds every run.
"""
import random
import socket
import ssl
import time

import pytest
from django.db import connection

from .conftest import ACCEPT_ROLES, SERVER_ENV
from .smtp_helpers import LineClient, Server

pytestmark = pytest.mark.django_db(transaction=True)

SESSIONS = 25  # per port and event loop
TIME_CAP = 20.0  # seconds per port and event loop, whatever SESSIONS says

VERBS = ["EHLO", "HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "VRFY", "EXPN",
         "HELP", "AUTH", "STARTTLS", "BDAT", "XCLIENT", "ETRN", "BOGUS", "", "\x00"]
ARGS = ["client.test", "FROM:<a@example.com>", "FROM:<>", "TO:<postmaster>",
        "TO:<postmaster@bounces.test>", "TO:<bob@example.org>", "PLAIN", "LOGIN",
        "PLAIN AGFsaWNlAHB3", "FROM:<a@example.com> SIZE=999999999", "TO:<x> NOTIFY=NEVER",
        "FROM:<a@example.com> RET=HDRS ENVID=a+2Bb", "*", "=", ""]


def _line(rnd: random.Random) -> bytes:
    """One command line: a plausible one, then perhaps mutated at the byte level."""
    verb = rnd.choice(VERBS)
    if rnd.random() < 0.3:
        verb = verb.lower()
    line = f"{verb} {rnd.choice(ARGS)}".encode() if rnd.random() < 0.7 else verb.encode()
    mutation = rnd.random()
    if mutation < 0.15:
        line = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 40)))
    elif mutation < 0.3 and line:
        b = bytearray(line)
        for _ in range(rnd.randrange(1, 4)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        line = bytes(b)
    elif mutation < 0.35:
        line = line + b"x" * rnd.choice([600, 1200, 13000])
    elif mutation < 0.4:
        line = line + rnd.choice([b"\r", b"\n", b"\r\r", b"\x00"])
    return line + rnd.choice([b"\r\n"] * 8 + [b"\n", b""])


def _script(rnd: random.Random) -> list[bytes]:
    """The writes of one session: runs of random lines, sometimes DATA with a random body, and
    sometimes a flood of unknown commands (aiosmtpd closes after 10 and says 502)."""
    writes = []
    for _ in range(rnd.randrange(1, 6)):
        kind = rnd.random()
        if kind < 0.25:
            writes.append(b"EHLO client.test\r\n" + b"BOGUS\r\n" * rnd.choice([12, 50, 1000]))
        elif kind < 0.4:
            body = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 300)))
            writes.append(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nDATA\r\n" + body
                          + rnd.choice([b"\r\n.\r\n", b"\n.\n", b""]) + b"NOOP\r\n" * 20)
        else:
            writes.append(b"".join(_line(rnd) for _ in range(rnd.randrange(1, 40))))
    return writes


def _drain(sock: socket.socket, seconds: float) -> None:
    """Read whatever the server says for up to ``seconds`` (or until it closes)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return
        except TimeoutError:
            continue
        except (OSError, ssl.SSLError):
            return


def _session(server: Server, kind: str, writes: list[bytes]) -> None:
    port = {"tls": server.tls_port, "starttls": server.starttls_port, "mx": server.mx_port}[kind]
    try:
        c = LineClient(server, port, implicit_tls=kind == "tls", timeout=5)
        if kind == "starttls":
            c.cmd("EHLO client.test")
            c.starttls()
        for data in writes:
            c.send(data)
        _drain(c.sock, 0.3)
        c.close()
    except (OSError, ssl.SSLError, ConnectionError):
        pass  # the server may close at any point: that is allowed, a traceback is not


def _prompt_answer(server: Server, kind: str) -> float:
    """Seconds a well-behaved client waits for its greeting and a NOOP."""
    started = time.monotonic()
    port = {"tls": server.tls_port, "starttls": server.starttls_port, "mx": server.mx_port}[kind]
    c = LineClient(server, port, implicit_tls=kind == "tls", timeout=5)
    if kind == "starttls":
        c.cmd("EHLO client.test")
        c.starttls()
    assert c.cmd("EHLO client.test").code == 250
    assert c.cmd("NOOP").code == 250
    c.close()
    return time.monotonic() - started


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def fuzz_server(request, django_db_setup, django_db_blocker, tls_files, tmp_path_factory):
    with django_db_blocker.unblock():
        connection.ensure_connection()
    server = Server(
        cert=tls_files[0], key=tls_files[1], workdir=tmp_path_factory.mktemp("runsmtp"),
        env_extra={**SERVER_ENV, "SMTP_EVENT_LOOP": request.param}, roles=ACCEPT_ROLES,
    ).start()
    yield server
    server.stop()


def _assert_no_traceback(server: Server, what: str) -> None:
    log = server.log_text()
    count = log.count("Traceback")
    assert count == 0, f"{what}: {count} tracebacks\n" + log[log.index("Traceback") - 1500:][:5000]


@pytest.mark.parametrize("kind", ["tls", "starttls", "mx"])
def test_a_flood_of_unknown_commands_ends_in_one_502_and_no_traceback(fuzz_server, kind):
    port = {"tls": fuzz_server.tls_port, "starttls": fuzz_server.starttls_port,
            "mx": fuzz_server.mx_port}[kind]
    c = LineClient(fuzz_server, port, implicit_tls=kind == "tls")
    if kind == "starttls":
        c.cmd("EHLO client.test")
        c.starttls()
    c.send(b"EHLO client.test\r\n" + b"BOGUS\r\n" * 1000)
    replies = []
    try:
        while True:
            replies.append(c.reply().code)
    except (ConnectionError, OSError, ssl.SSLError):
        pass
    assert replies[0] == 250 and replies[-1] == 502, replies
    assert replies.count(502) == 1 and 451 not in replies, replies
    time.sleep(0.5)  # the server's side of the close
    _assert_no_traceback(fuzz_server, f"{kind}: EHLO + 1000 x BOGUS")
    assert _prompt_answer(fuzz_server, kind) < 3


@pytest.mark.parametrize("kind", ["tls", "starttls", "mx"])
def test_random_and_mutated_commands_leave_no_traceback(fuzz_server, kind):
    seed = random.randrange(1 << 32)
    rnd = random.Random(seed)
    started = time.monotonic()
    for _ in range(SESSIONS):
        if time.monotonic() - started > TIME_CAP:
            break
        _session(fuzz_server, kind, _script(rnd))
    time.sleep(0.5)
    _assert_no_traceback(fuzz_server, f"{kind}, seed {seed}")
    assert _prompt_answer(fuzz_server, kind) < 3, f"seed {seed}"
