"""Starting a real `manage.py runsmtp` for tests, and a tiny line-level SMTP client for the
dialogues smtplib will not send (bare LF, pipelining into STARTTLS, smuggling)."""
from __future__ import annotations

import base64
import os
import random
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def free_port() -> int:
    """A port that is free now, below the ephemeral range (32768 and up on Linux).

    A port from bind(("", 0)) comes from the ephemeral range, where the kernel also picks the
    local ports of outgoing connections (to PostgreSQL, say): one of those could take it before
    runsmtp binds it.
    """
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 32000")


def database_url() -> str:
    """The test database as a DATABASE_URL, for the server subprocess (SQLite or PostgreSQL)."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    return (
        f"postgres://{s['USER']}:{s['PASSWORD'] or ''}@{s['HOST'] or '127.0.0.1'}:"
        f"{s['PORT'] or 5432}/{s['NAME']}"
    )


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {name} is not installed")
        pytest.skip(f"{name} is not installed")
    return path


RUNNING: dict[int, Server] = {}  # id -> a started runsmtp (see wait_until_idle)
WORKER_ROLES = {"delivery", "intake"}  # roles that write to the database on their own


@dataclass
class Server:
    cert: Path
    key: Path
    workdir: Path
    env_extra: dict = field(default_factory=dict)
    tls_port: int = 0
    starttls_port: int = 0
    mx_port: int = 0
    rlimit_nofile: int | None = None  # soft and hard descriptor limit of the process
    roles: str | None = None  # runsmtp --roles; None: its default (every role)
    proc: subprocess.Popen | None = None

    def __post_init__(self):
        self._auto_ports = not (self.tls_port or self.starttls_port or self.mx_port)
        self.tls_port = self.tls_port or free_port()
        self.starttls_port = self.starttls_port or free_port()
        self.mx_port = self.mx_port or free_port()
        self.log = self.workdir / f"runsmtp-{self.tls_port}.log"

    def env(self) -> dict:
        env = dict(os.environ)
        # The browser tests set this for their own process; runsmtp must not inherit it, so
        # that a sync ORM call on the event loop fails here as it would in production.
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        env.update(
            DATABASE_URL=database_url(),
            TLS_CERT_FILE=str(self.cert),
            TLS_KEY_FILE=str(self.key),
            SMTP_BIND=HOST,
            SMTP_TLS_PORTS=str(self.tls_port),
            SMTP_STARTTLS_PORTS=str(self.starttls_port),
            SMTP_MX_PORTS=str(self.mx_port),
            SMTP_HOSTNAME="relay.test",
            LOG_LEVEL="INFO",  # the tests read runsmtp's log, its "ready" line first
            BOUNCE_DOMAIN="bounces.test",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.env_extra)
        return env

    def start(self) -> Server:
        for attempt in range(3):
            try:
                return self._start()
            except RuntimeError as exc:
                # Another process took a port between free_port() and runsmtp's bind.
                if ("address already in use" not in str(exc) or not self._auto_ports
                        or attempt == 2):
                    raise
                self.tls_port, self.starttls_port, self.mx_port = (
                    free_port(), free_port(), free_port())
        raise AssertionError("unreachable")

    def _start(self) -> Server:
        # Ready means runsmtp said so in its log since this start: a port that accepts a
        # connection could be another process's (the one that made this start fail).
        offset = self.log.stat().st_size if self.log.exists() else 0
        logfile = open(self.log, "ab")  # noqa: SIM115 - kept open for the process' lifetime
        limit = self.rlimit_nofile
        roles = ["--roles", self.roles] if self.roles else []
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "runsmtp", "--skip-checks", *roles],
            cwd=ROOT, env=self.env(), stdout=logfile, stderr=subprocess.STDOUT,
            preexec_fn=None if limit is None else
            lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)),
        )
        logfile.close()
        RUNNING[id(self)] = self
        deadline = time.monotonic() + 30
        while True:
            with open(self.log, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
            if "runsmtp ready on" in text:
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"runsmtp exited:\n{text}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"runsmtp not ready after 30 s:\n{text}")
            time.sleep(0.05)

    @property
    def workers(self) -> set[str]:
        """Its roles that work the queue in the background (delivery, intake)."""
        roles = self.roles.split(",") if self.roles else WORKER_ROLES
        return WORKER_ROLES & {r.strip() for r in roles}

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM) -> None:
        RUNNING.pop(id(self), None)
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


class Reply:
    def __init__(self, code: int, lines: list[str]):
        self.code = code
        self.lines = lines

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def __repr__(self) -> str:
        return f"Reply({self.code}, {self.lines!r})"


class LineClient:
    """Bytes in, parsed replies out; optionally TLS from the start or after STARTTLS."""

    def __init__(self, server: Server, port: int, *, implicit_tls=False, source_ip=None,
                 timeout=10.0):
        self.server = server
        sock = socket.create_connection(
            (HOST, port), timeout=timeout,
            source_address=(source_ip, 0) if source_ip else None,
        )
        if implicit_tls:
            sock = server.client_context().wrap_socket(sock, server_hostname=HOST)
        self.sock = sock
        self.buf = b""
        self.greeting = self.reply()

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; buffered {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self) -> Reply:
        lines = []
        while True:
            line = self._line().decode()
            lines.append(line[4:])
            if line[3:4] != "-":
                return Reply(int(line[:3]), lines)

    def cmd(self, line: str) -> Reply:
        self.send(line + "\r\n")
        return self.reply()

    def starttls(self) -> Reply:
        r = self.cmd("STARTTLS")
        assert r.code == 220, r
        assert self.buf == b""
        self.sock = self.server.client_context().wrap_socket(self.sock, server_hostname=HOST)
        return r

    def send_message(self, body: bytes, mail_from: str = "app@example.com",
                     rcpt: str = "bob@example.org") -> Reply:
        """MAIL, RCPT, DATA (each must be accepted), body and its final dot: the last reply."""
        for line, code in ((f"MAIL FROM:<{mail_from}>", 250), (f"RCPT TO:<{rcpt}>", 250),
                           ("DATA", 354)):
            reply = self.cmd(line)
            assert reply.code == code, (line, reply)
        self.send(body + b".\r\n")
        return self.reply()

    def auth_plain(self, username: str, password: str) -> Reply:
        blob = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
        return self.cmd(f"AUTH PLAIN {blob}")

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except (ConnectionError, ssl.SSLError):
            return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def old_tls_context(server: Server) -> ssl.SSLContext:
    """A client context that offers only TLS 1.0/1.1, which runsmtp must refuse."""
    ctx = server.client_context()
    with pytest.warns(DeprecationWarning):
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    return ctx


def running_workers() -> set[str]:
    """The background roles of every runsmtp still running (a killed one does not count)."""
    return {role for server in list(RUNNING.values()) if server.running()
            for role in server.workers}


def busy(workers: set[str]) -> str:
    """What a runsmtp with these roles may still be writing to the test database, or "": a
    lease held (a delivery in flight or its outcome not yet recorded), a recipient due now (a
    DSN just queued, say), an intake message not yet read."""
    from django.utils import timezone

    from relay.models import Message, Recipient

    if "delivery" in workers:
        if Recipient.objects.exclude(leased_by="").exists():
            return "recipients leased"
        if Recipient.objects.filter(state__in=["queued", "deferred"],
                                    next_attempt_at__lte=timezone.now()).exists():
            return "recipients due"
    if "intake" in workers and Message.objects.filter(
            kind="bounce", intake_done_at__isnull=True).exists():
        return "intake pending"
    return ""


def wait_until_idle(workers: set[str], timeout: float = 30) -> None:
    """Until the runsmtp workers have nothing in flight in the test database: a test that
    shares a module-scoped server ends only then, so pytest-django's flush at teardown
    (TRUNCATE) never meets an outcome being written (a deadlock on PostgreSQL, then the next
    test's setup failing). Idle twice in a row, 50 ms apart: a claim can follow a commit."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 2:
        what = busy(workers)
        quiet = 0 if what else quiet + 1
        if what and time.monotonic() > deadline:
            raise AssertionError(f"runsmtp still busy after {timeout} s ({what}): the "
                                 "test left work that would race the database flush")
        time.sleep(0.05)
