"""`manage.py runsmtp --check`: what a process supervisor asks of a runsmtp host. The
database answers and has every migration, the certificate loads, and each SMTP listener of
the given roles greets with 220 (a stopping process answers 421 and fails the check)."""
from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

from . import tls
from .server import ListenerSpec
from .smtpd import ROLE_TLS

TIMEOUT = 5.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'ok' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def database() -> Check:
    conn = connections[DEFAULT_DB_ALIAS]
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        pending = MigrationExecutor(conn).migration_plan(
            MigrationExecutor(conn).loader.graph.leaf_nodes())
    except Exception as exc:  # noqa: BLE001 - the check reports it
        return Check("database", False, f"{type(exc).__name__}: {str(exc).strip()[:200]}")
    if pending:
        return Check("database", False, f"{len(pending)} migration(s) not applied "
                                        "(manage.py migrate)")
    return Check("database", True, f"{conn.vendor}, migrations applied")


def certificate(cert_file: str, key_file: str) -> Check:
    try:
        tls.server_context(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        return Check("certificate", False, f"{cert_file}: {exc}")
    return Check("certificate", True, cert_file)


def listener(bind: str, spec: ListenerSpec) -> Check:
    host = "127.0.0.1" if bind in ("", "0.0.0.0") else "::1" if bind == "::" else bind
    name = f"smtp {host}:{spec.port} ({spec.role})"
    try:
        with socket.create_connection((host, spec.port), timeout=TIMEOUT) as sock:
            if spec.role == ROLE_TLS:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False  # a liveness check, not a trust decision
                ctx.verify_mode = ssl.CERT_NONE
                with ctx.wrap_socket(sock) as wrapped:
                    greeting = _line(wrapped)
            else:
                greeting = _line(sock)
    except (OSError, ssl.SSLError) as exc:
        return Check(name, False, f"no answer ({exc})")
    return Check(name, greeting.startswith("220"), greeting[:120] or "closed without a word")


def _line(sock: socket.socket) -> str:
    data = b""
    while b"\n" not in data and len(data) < 1024:
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    return data.decode("ascii", "replace").strip()


def run_checks(bind: str, specs: list[ListenerSpec], cert_file: str,
               key_file: str) -> list[Check]:
    return [database(), certificate(cert_file, key_file)] + [listener(bind, s) for s in specs]
