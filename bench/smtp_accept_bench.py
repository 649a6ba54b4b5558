"""SMTP acceptance benchmark: how many 5 KB messages per second runsmtp commits on SQLite.

Starts a real `manage.py runsmtp` on loopback against a fresh SQLite database in a temporary
DATA_DIR (real argon2 cost, TLS, fsync'd commits) and drives it with smtplib from 10 client
processes:

  reuse    10 clients x 200 messages, STARTTLS + AUTH PLAIN once per connection
  pipelined  as reuse, with MAIL, RCPT and DATA sent in one write as MTAs do (no target)
  per-msg  10 clients x 200 messages, a new connection + STARTTLS + AUTH for every message
  idle     runsmtp's resident memory with 1,000 idle authenticated TLS connections
  big      the rise of runsmtp's peak memory while it accepts one 25 MiB message

A message counts when the client has its "250 queued", which runsmtp sends only after the
commit. Usage: python bench/smtp_accept_bench.py [--messages 2000] [--clients 10] [--skip ...]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import resource
import signal
import smtplib
import socket
import ssl
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def make_message(size: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    head = (f"From: Bench <bench@example.com>\r\nTo: <rcpt@example.org>\r\n"
            f"Subject: bench {seed}\r\nMessage-ID: <{seed}@bench.example>\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n").encode()
    lines = []
    total = len(head)
    while total < size:
        line = "".join(rnd.choice(string.ascii_letters + " ") for _ in range(76)).encode()
        lines.append(line)
        total += len(line) + 2
    return head + b"\r\n".join(lines) + b"\r\n"


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tls_ctx(cafile: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


# -- clients (separate processes, so that the client side is not one GIL) ---------------


def client_reuse(args) -> int:
    port, cafile, user, password, count, seed, barrier = args
    msg = make_message(5 * 1024, seed)
    barrier.wait()
    with smtplib.SMTP(HOST, port, timeout=60) as s:
        s.starttls(context=tls_ctx(cafile))
        s.login(user, password)
        for _ in range(count):
            s.sendmail("bench@example.com", ["rcpt@example.org"], msg)
    return count, time.process_time()


def client_pipelined(args) -> int:
    """As client_reuse, but MAIL, RCPT and DATA go out in one write (RFC 2920), as Postfix
    and most MTAs send them; smtplib itself waits for each reply."""
    port, cafile, user, password, count, seed, barrier = args
    msg = make_message(5 * 1024, seed)  # no line starts with "."
    envelope = b"MAIL FROM:<bench@example.com>\r\nRCPT TO:<rcpt@example.org>\r\nDATA\r\n"
    barrier.wait()
    with smtplib.SMTP(HOST, port, timeout=60) as s:
        s.starttls(context=tls_ctx(cafile))
        s.login(user, password)
        for _ in range(count):
            s.send(envelope)
            codes = [s.getreply()[0] for _ in range(3)]
            if codes != [250, 250, 354]:
                raise RuntimeError(f"pipelined envelope refused: {codes}")
            s.send(msg + b".\r\n")
            code, reply = s.getreply()
            if code != 250:
                raise RuntimeError(f"message refused: {code} {reply!r}")
    return count, time.process_time()


def client_per_message(args) -> int:
    port, cafile, user, password, count, seed, barrier = args
    msg = make_message(5 * 1024, seed)
    ctx = tls_ctx(cafile)
    barrier.wait()
    for _ in range(count):
        with smtplib.SMTP(HOST, port, timeout=60) as s:
            s.starttls(context=ctx)
            s.login(user, password)
            s.sendmail("bench@example.com", ["rcpt@example.org"], msg)
    return count, time.process_time()


def run_clients(fn, server, cafile, user, password, messages, clients) -> dict:
    port = server.port
    per_client = messages // clients
    cpu_before = cpu_seconds(server.proc.pid)
    with mp.Manager() as manager:
        barrier = manager.Barrier(clients + 1)
        with mp.Pool(clients) as pool:
            jobs = [(port, cafile, user, password, per_client, i, barrier) for i in range(clients)]
            result = pool.map_async(fn, jobs)
            barrier.wait()
            started = time.perf_counter()
            counts = result.get(600)
            elapsed = time.perf_counter() - started
    done = sum(c for c, _ in counts)
    client_cpu = sum(t for _, t in counts)
    cpu = cpu_seconds(server.proc.pid) - cpu_before
    return {"messages": done, "seconds": round(elapsed, 3), "msg_per_s": round(done / elapsed, 1),
            "server_cpu_ms_per_msg": round(cpu * 1000 / done, 3),
            "client_cpu_ms_per_msg": round(client_cpu * 1000 / done, 3)}


# -- the server ---------------------------------------------------------------------------


class Runsmtp:
    def __init__(self, data_dir: Path, database_url: str | None = None):
        self.data_dir = data_dir
        self.port = free_port()
        self.tls_port = free_port()
        self.env = dict(
            os.environ,
            DATA_DIR=str(data_dir),
            SMTP_BIND=HOST,
            SMTP_TLS_PORTS=str(self.tls_port),
            SMTP_STARTTLS_PORTS=str(self.port),
            SMTP_MX_PORTS="",
            SMTP_HOSTNAME="bench.test",
            SMTP_MAX_CONNECTIONS_PER_IP="0",
            SMTP_MAX_UNAUTH_CONNECTIONS_PER_IP="0",
            LOG_LEVEL="WARNING",
        )
        self.env.pop("DATABASE_URL", None)
        if database_url:
            self.env["DATABASE_URL"] = database_url

    def manage(self, *args: str) -> str:
        out = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args, "--skip-checks"]
                             if args[0] not in ("shell",) else
                             [sys.executable, str(ROOT / "manage.py"), *args],
                             cwd=ROOT, env=self.env, capture_output=True, text=True, check=True)
        return out.stdout

    def setup(self) -> tuple[str, str]:
        self.manage("migrate", "--noinput", "-v0")
        self.manage("maketlscert", "--hostname", "127.0.0.1")
        self.manage("shell", "-c",
                    "from django.contrib.auth import get_user_model as g; "
                    "g().objects.create_user('bench')")
        login = json.loads(self.manage("createlogin", "--owner", "bench", "--json",
                                       "--features", "clicktracking"))
        return login["username"], login["password"]

    def start(self) -> None:
        # e.g. BENCH_PYTHON_ARGS="-m cProfile -o /tmp/runsmtp.prof" profiles the event loop.
        python_args = os.environ.get("BENCH_PYTHON_ARGS", "").split()
        self.proc = subprocess.Popen(
            [sys.executable, *python_args, str(ROOT / "manage.py"), "runsmtp",
             "--roles", "submission", "--skip-checks"], cwd=ROOT, env=self.env,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                socket.create_connection((HOST, self.tls_port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("runsmtp did not start") from None
                time.sleep(0.05)
        if os.environ.get("BENCH_PYSPY"):  # e.g. BENCH_PYSPY=/tmp/spy.txt: sample the server
            subprocess.Popen(["py-spy", "record", "--pid", str(self.proc.pid), "-f", "raw",
                              "--threads", "-r", "500", "-d", os.environ.get("BENCH_PYSPY_S", "6"),
                              "-o", os.environ["BENCH_PYSPY"]])

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)

    def queued(self) -> tuple[int, int]:
        """Rows stored, and commits (a group commit gives its messages one received_at)."""
        out = self.manage(
            "shell", "-c", "from relay.models import Message as M; "
            "print(M.objects.count(), M.objects.values('received_at').distinct().count())"
        ).strip().splitlines()[-1]
        rows, commits = out.split()
        return int(rows), int(commits)


def idle_connections(server: Runsmtp, cafile, user, password, n: int) -> dict:
    ctx = tls_ctx(cafile)
    base = rss_kib(server.proc.pid)
    conns = []
    for _ in range(n):
        s = smtplib.SMTP_SSL(HOST, server.tls_port, context=ctx, timeout=60)
        s.login(user, password)
        conns.append(s)
    time.sleep(1)
    rss = rss_kib(server.proc.pid)
    for s in conns:
        s.close()
    return {"connections": n, "rss_before_mib": round(base / 1024, 1),
            "rss_with_idle_mib": round(rss / 1024, 1)}


def big_message(server: Runsmtp, cafile, user, password, size: int) -> dict:
    ctx = tls_ctx(cafile)
    line = b"x" * 76 + b"\r\n"
    msg = b"Subject: big\r\n\r\n" + line * ((size - 1024) // len(line))
    with smtplib.SMTP_SSL(HOST, server.tls_port, context=ctx, timeout=300) as s:
        s.login(user, password)
        s.sendmail("bench@example.com", ["rcpt@example.org"], b"Subject: warm\r\n\r\nx\r\n")
        time.sleep(0.5)
        # Reset the peak to the current RSS: the AUTH's argon2 check (~100 MiB) set it.
        Path(f"/proc/{server.proc.pid}/clear_refs").write_text("5")
        before = rss_kib(server.proc.pid, "VmHWM")
        started = time.perf_counter()
        s.sendmail("bench@example.com", ["rcpt@example.org"], msg)
        elapsed = time.perf_counter() - started
    after = rss_kib(server.proc.pid, "VmHWM")
    rise = (after - before) * 1024
    return {"message_mib": round(len(msg) / 2**20, 1), "peak_before_mib": round(before / 1024, 1),
            "peak_after_mib": round(after / 1024, 1), "rise_x_message": round(rise / len(msg), 2),
            "seconds": round(elapsed, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--postgres", metavar="URL",
                        help="run against a new database on this PostgreSQL server, e.g. "
                        "postgres://postgres@127.0.0.1:5432 (default: SQLite)")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["reuse", "pipelined", "per-msg", "idle", "big"])
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     "cpus": os.cpu_count()}
    database_url = None
    if args.postgres:
        database_url = create_pg_database(args.postgres)
        results["database"] = "postgresql"
    else:
        results["database"] = "sqlite"
    with tempfile.TemporaryDirectory(prefix="smtpeter-bench-") as tmp:
        server = Runsmtp(Path(tmp), database_url)
        user, password = server.setup()
        cafile = str(Path(tmp) / "tls" / "cert.pem")
        server.start()
        try:
            if "big" not in args.skip:
                results["big_25mib"] = big_message(server, cafile, user, password, 25 * 2**20)
                print("big:", results["big_25mib"], flush=True)
            if "reuse" not in args.skip:
                results["reuse"] = run_clients(client_reuse, server, cafile, user, password,
                                               args.messages, args.clients)
                print("reuse:", results["reuse"], flush=True)
            if "pipelined" not in args.skip:
                results["pipelined"] = run_clients(client_pipelined, server, cafile, user,
                                                   password, args.messages, args.clients)
                print("pipelined:", results["pipelined"], flush=True)
            if "per-msg" not in args.skip:
                results["per_message"] = run_clients(client_per_message, server, cafile, user,
                                                     password, args.messages, args.clients)
                print("per-message:", results["per_message"], flush=True)
            if "idle" not in args.skip:
                results["idle"] = idle_connections(server, cafile, user, password, args.idle)
                print("idle:", results["idle"], flush=True)
        finally:
            server.stop()
        results["queued_rows"], results["commits"] = server.queued()
    if database_url:
        drop_pg_database(database_url)
    print(json.dumps(results))


def _pg_admin(url: str):
    from urllib.parse import urlsplit

    import psycopg

    u = urlsplit(url)
    return psycopg.connect(host=u.hostname, port=u.port or 5432, user=u.username or "postgres",
                           password=u.password, dbname="postgres", autocommit=True)


def create_pg_database(server_url: str) -> str:
    name = f"smtpeter_bench_{os.getpid()}"
    with _pg_admin(server_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url.rstrip('/')}/{name}"


def drop_pg_database(url: str) -> None:
    with _pg_admin(url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


if __name__ == "__main__":
    main()
