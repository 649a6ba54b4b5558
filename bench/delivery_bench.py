"""Delivery benchmark (issue 9): runsmtp's delivery role against a private Postfix relaying the
same load to the same local sink, on loopback, in one run.

  plain       10,000 plain 5 KB messages over 10 domains. Queued first, then delivered (time
              from the delivery role's start, or Postfix's queue release, until the sink has
              all), and end to end (submission and delivery at once: first submit until the
              sink has all). Postfix gets the same messages by plain SMTP from mynetworks
              (runsmtp needs TLS + AUTH), relayhost=[127.0.0.1]:<sink>.
  newsletter  one 40 KB newsletter with all five features to 10,000 recipients, queued first:
              recipients delivered per second (each its own transaction: VERP, tokens).
              DKIM_SIGNING=false, the figure without signing.
  newsletter_signed  the same, DKIM-signed (RSA 2048) per recipient with the keys of the
              From domain, a verified sender domain of the login's owner (issue 13).
  latency     a steady 100 msg/s for 30 s into runsmtp (every role): from the client's "250"
              to the sink's receive time of that message (X-Seq header), p50 / p99.
  rss         100,000 queued recipients (100 messages x 1,000, features off), then delivered:
              runsmtp's peak RSS (VmHWM) while delivering, and the rate.

The sink is Postfix's smtp-sink (C, stores nothing; its -c counter counts transactions), except
for latency, where a small aiosmtpd sink in its own process writes each message's receive time.
runsmtp runs on PostgreSQL (the production database): a new database on --postgres, dropped at
the end. runsmtp logs at INFO (one line per recipient, as Postfix logs each delivery).

Usage: python bench/delivery_bench.py [--postgres URL]
       [--only plain,newsletter,newsletter_signed,latency,rss]
       [--messages 10000] [--rss-recipients 100000]
Needs root (Postfix drops privileges), /usr/sbin/postfix and smtp-sink.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import smtplib
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from newsletters import message as newsletter_message  # noqa: E402
from newsletters import newsletter  # noqa: E402
from smtp_accept_bench import (  # noqa: E402
    create_pg_database,
    drop_pg_database,
    free_port,
    make_message,
    rss_kib,
)

from tests.relay.postfix import master_cf  # noqa: E402

HOST = "127.0.0.1"
PLAIN_PARTS = ["queued", "e2e", "e2e-split", "postfix-queued", "postfix-e2e"]
MORE_PARTS = ["queued-2"]  # two delivery processes on the queued load (not in the default)
DOMAINS = [f"d{i}.bench.test" for i in range(10)]
ALL_FEATURES = "clicktracking,openstracking,preventscam,bouncetracking,inlinecss"


# -- the sinks --------------------------------------------------------------------------------


class SmtpSink:
    """Postfix's smtp-sink with its -c counter read from stdout: transactions received."""

    def __init__(self) -> None:
        self.port = free_port()
        self.count = 0
        self.reached: dict[int, float] = {}
        self.first_at: float | None = None
        binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        # stdbuf: its counter goes to stdout through stdio, block-buffered into a pipe.
        self.proc = subprocess.Popen(["stdbuf", "-o0", binary, *user, "-c",
                                      f"{HOST}:{self.port}", "1024"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        threading.Thread(target=self._read, daemon=True).start()
        wait_port(self.port)

    def _read(self) -> None:
        buf = b""
        while chunk := self.proc.stdout.read1(65536):
            buf += chunk
            *lines, buf = re.split(rb"[\r\n]", buf)
            for line in lines:
                m = re.search(rb"mesg=(\d+)", line)
                if m:
                    if self.first_at is None and int(m.group(1)) > 0:
                        self.first_at = time.perf_counter()
                    self.count = int(m.group(1))

    def wait_for(self, n: int, timeout: float = 300) -> float:
        deadline = time.perf_counter() + timeout
        while self.count < n:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"sink got {self.count} of {n}")
            time.sleep(0.01)
        return time.perf_counter()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


TIMING_SINK = r'''
import asyncio, re, sys, time
from aiosmtpd.controller import Controller
out = open(sys.argv[2], "w", buffering=1)
SEQ = re.compile(rb"^X-Seq: (\d+)", re.M)
class H:
    async def handle_DATA(self, server, session, envelope):
        m = SEQ.search(envelope.original_content or envelope.content)
        out.write(f"{m.group(1).decode() if m else -1} {time.time():.6f}\n")
        return "250 2.0.0 Ok"
c = Controller(H(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
try:
    asyncio.run(asyncio.sleep(10**6))
finally:
    c.stop()
'''


def wait_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- Postfix ----------------------------------------------------------------------------------


class BenchPostfix:
    """A private Postfix on loopback relaying everything to relayhost=[127.0.0.1]:<sink>."""

    def __init__(self, sink_port: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="smtpeter-bench-postfix-"))
        self.config = self.dir / "etc"
        self.port = free_port()
        self.sink_port = sink_port

    def _main_cf(self, deferred: bool) -> str:
        d = self.dir
        return f"""
compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
relayhost = [127.0.0.1]:{self.sink_port}
smtp_tls_security_level = none
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_client_connection_rate_limit = 0
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
defer_transports = {"smtp" if deferred else ""}
"""

    def start(self, deferred: bool = False) -> BenchPostfix:
        for sub in ("etc", "spool", "data"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.dir / "data", "postfix", "postfix")
        (self.config / "main.cf").write_text(self._main_cf(deferred))
        (self.config / "master.cf").write_text(master_cf(self.port))
        os.chmod(self.dir, 0o755)
        subprocess.run(["postfix", "-c", str(self.config), "start"], check=True,
                       capture_output=True, timeout=60)
        wait_port(self.port)
        return self

    def release(self) -> None:
        """Stop deferring the smtp transport and flush the queue (the timed part starts)."""
        (self.config / "main.cf").write_text(self._main_cf(False))
        subprocess.run(["postfix", "-c", str(self.config), "reload"], check=True,
                       capture_output=True, timeout=60)
        subprocess.run(["postqueue", "-c", str(self.config), "-f"], check=True,
                       capture_output=True, timeout=60)

    def queued(self) -> int:
        out = subprocess.run(["postqueue", "-c", str(self.config), "-j"], capture_output=True,
                             text=True, timeout=60).stdout
        return sum(1 for line in out.splitlines() if line.strip())

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.config), "stop"], capture_output=True,
                       timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


# -- runsmtp ----------------------------------------------------------------------------------


class Runsmtp:
    def __init__(self, workdir: Path, database_url: str, sink_port: int,
                 name: str = "runsmtp") -> None:
        self.workdir = workdir
        self.tls_port = free_port()
        self.database_url = database_url
        self.proc: subprocess.Popen | None = None
        self.env = dict(
            os.environ, DATA_DIR=str(workdir), DATABASE_URL=database_url, SMTP_BIND=HOST,
            SMTP_TLS_PORTS=str(self.tls_port), SMTP_STARTTLS_PORTS="", SMTP_MX_PORTS="",
            SMTP_HOSTNAME="relay.bench.test", SMTP_MAX_CONNECTIONS_PER_IP="0",
            SMTP_MAX_UNAUTH_CONNECTIONS_PER_IP="0", SMTP_MAX_RECIPIENTS="10000",
            DELIVERY_MODE="mx", RELAY_ROUTES=f"*={HOST}:{sink_port}",
            DELIVERY_ALLOW_PRIVATE="true", BOUNCE_DOMAIN="bounces.bench.test",
            LOG_LEVEL="INFO", PYTHONUNBUFFERED="1",
        )
        self.log = workdir / f"{name}.log"

    def sibling(self, name: str) -> Runsmtp:
        """Another runsmtp process on the same database and settings (its own log)."""
        other = Runsmtp(self.workdir, self.database_url, 25, name)
        other.env = dict(self.env)
        return other

    def manage(self, *args: str) -> str:
        return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT,
                              env=self.env, capture_output=True, text=True, check=True).stdout

    def setup(self) -> dict[str, tuple[str, str]]:
        """Migrate, a certificate, and two logins: features off, and all five."""
        self.manage("migrate", "--noinput", "-v0")
        self.manage("maketlscert", "--hostname", "127.0.0.1")
        self.manage("shell", "-c", "from django.contrib.auth import get_user_model as g; "
                    "g().objects.create_user('bench')")
        logins = {}
        for name, features in (("plain", ""), ("all", ALL_FEATURES)):
            login = json.loads(self.manage("createlogin", "--owner", "bench", "--json",
                                           "--features", features, "--skip-checks"))
            logins[name] = (login["username"], login["password"])
        # The newsletter's From domain as a verified sender domain (marked so here: the bench
        # has no DNS to check it against), for newsletter_signed.
        self.manage("shell", "-c", "from django.contrib.auth import get_user_model as g; "
                    "from django.utils import timezone; from senders import services; "
                    "d = services.add_domain(g().objects.get(username='bench'), 'example.com'); "
                    "type(d).objects.filter(pk=d.pk).update(verified_at=timezone.now())")
        return logins

    @property
    def cafile(self) -> str:
        return str(self.workdir / "tls" / "cert.pem")

    def start(self, roles: str) -> float:
        """Start with these roles; the perf_counter() time runsmtp said it was ready."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as logfile:
            self.proc = subprocess.Popen(
                [sys.executable, *os.environ.get("BENCH_PYTHON_ARGS", "").split(),
                 str(ROOT / "manage.py"), "runsmtp", "--roles", roles, "--skip-checks"],
                cwd=ROOT, env=self.env, stdout=logfile, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            with open(self.log, "rb") as f:
                f.seek(offset)
                if b"runsmtp ready on" in f.read():
                    return time.perf_counter()
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("runsmtp did not start; see " + str(self.log))
            time.sleep(0.02)

    def renderers_ready(self, timeout: float = 10) -> None:
        """Wait until the render processes exist (they start with the delivery role), so that
        their CPU is counted from the start."""
        deadline = time.monotonic() + timeout
        # the fork server and the two render processes under it
        while len(descendants(self.proc.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)

    def sql(self, query: str):
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cur = conn.execute(query)
            return cur.fetchone() if cur.description else None

    def delivered(self) -> int:
        return self.sql("SELECT count(*) FROM relay_recipient WHERE state = 'delivered'")[0]

    def wait_recorded(self, n: int, timeout: float = 120) -> float:
        """Until n recipients are recorded delivered (the sink counts before that); the
        perf_counter() time."""
        deadline = time.monotonic() + timeout
        while self.delivered() < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.delivered()} of {n} recorded delivered")
            time.sleep(0.05)
        return time.perf_counter()

    def reset(self) -> None:
        self.sql("TRUNCATE relay_message CASCADE")


# -- clients ----------------------------------------------------------------------------------


def _client(args) -> int:
    """One connection sending its share: messages [(seq, recipients, data)]."""
    port, tls_cafile, user, password, jobs = args
    if tls_cafile:
        s = smtplib.SMTP_SSL(HOST, port, context=ssl.create_default_context(cafile=tls_cafile),
                             timeout=300)
        s.login(user, password)
    else:
        s = smtplib.SMTP(HOST, port, timeout=300)
    for _, recipients, data in jobs:
        refused = s.sendmail("bench@sender.bench.test", recipients, data)
        if refused:
            raise RuntimeError(f"refused: {refused}")
    s.quit()
    return len(jobs)


def submit(port: int, cafile: str | None, login: tuple[str, str] | None, jobs: list,
           clients: int = 8) -> float:
    """Send jobs over `clients` connections from as many processes; the seconds it took."""
    user, password = login or ("", "")
    shares = [jobs[i::clients] for i in range(clients)]
    started = time.perf_counter()
    with mp.Pool(clients) as pool:
        pool.map(_client, [(port, cafile, user, password, s) for s in shares if s])
    return time.perf_counter() - started


def plain_jobs(n: int) -> list:
    body = make_message(5 * 1024, 1)
    return [(i, [f"r{i}@{DOMAINS[i % len(DOMAINS)]}"], body) for i in range(n)]


# -- the runs ---------------------------------------------------------------------------------


def run_plain(server: Runsmtp, login, n: int, parts: list[str] = PLAIN_PARTS) -> dict:
    jobs = plain_jobs(n)
    out: dict = {"messages": n}
    if "queued" in parts:
        out.update(_plain_queued(server, login, jobs))
    if "queued-2" in parts:
        out.update(_plain_queued(server, login, jobs, processes=2))
    if "e2e" in parts:
        out.update(_plain_e2e(server, login, jobs))
    if "e2e-split" in parts:
        out.update(_plain_e2e(server, login, jobs, split=True))
    if "postfix-queued" in parts:
        out.update(_postfix_queued(jobs))
    if "postfix-e2e" in parts:
        out.update(_postfix_e2e(jobs))
    return out


def _plain_queued(server: Runsmtp, login, jobs: list, processes: int = 1) -> dict:
    """Submitted with delivery off, then delivered by `processes` runsmtp --roles delivery
    (started at once; timed from the last one's "ready")."""
    n, out = len(jobs), {}
    tag = "" if processes == 1 else f"_{processes}p"
    sink = SmtpSink()
    server.env["RELAY_ROUTES"] = f"*={HOST}:{sink.port}"
    server.start("submission")
    out[f"runsmtp{tag}_submit_s"] = round(submit(server.tls_port, server.cafile, login, jobs),
                                          2)
    server.stop()
    workers = [server] + [server.sibling(f"delivery{i}") for i in range(1, processes)]
    ready = max(w.start("delivery") for w in workers)
    cpu0 = sum(tree_cpu(w.proc.pid) for w in workers)
    spy = py_spy(server.proc.pid)
    done = sink.wait_for(n)
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    cpu = sum(tree_cpu(w.proc.pid) for w in workers) - cpu0
    out[f"runsmtp{tag}_queued_delivery_s"] = round(done - ready, 2)
    out[f"runsmtp{tag}_queued_msg_per_s"] = round(n / (done - ready))
    out[f"runsmtp{tag}_cpu_ms_per_msg"] = round(1000 * cpu / n, 2)
    out[f"runsmtp{tag}_recorded_after_s"] = round(server.wait_recorded(n) - ready, 2)
    cpu = sum(tree_cpu(w.proc.pid) for w in workers) - cpu0
    out[f"runsmtp{tag}_cpu_ms_per_msg_recorded"] = round(1000 * cpu / n, 2)
    for w in workers:
        w.stop()
    sink.stop()
    server.reset()
    return out


def _plain_e2e(server: Runsmtp, login, jobs: list, split: bool = False) -> dict:
    """Submission and delivery at once: one runsmtp with both roles, or (split) one with
    submission and another with delivery, each on its own core."""
    n, out = len(jobs), {}
    tag = "_split" if split else ""
    sink = SmtpSink()
    server.env["RELAY_ROUTES"] = f"*={HOST}:{sink.port}"
    delivery = server.sibling("delivery") if split else None
    if delivery is not None:
        delivery.start("delivery")
    server.start("submission" if split else "submission,delivery")
    procs = [p for p in (server, delivery) if p is not None]
    cpu0 = sum(tree_cpu(p.proc.pid) for p in procs)
    spy = None if split else py_spy(server.proc.pid)
    started = time.perf_counter()
    out[f"runsmtp_e2e{tag}_submit_s"] = round(submit(server.tls_port, server.cafile, login,
                                                     jobs), 2)
    done = sink.wait_for(n)
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    out[f"runsmtp_e2e{tag}_s"] = round(done - started, 2)
    out[f"runsmtp_e2e{tag}_msg_per_s"] = round(n / (done - started))
    out[f"runsmtp_e2e{tag}_cpu_ms_per_msg"] = round(
        1000 * (sum(tree_cpu(p.proc.pid) for p in procs) - cpu0) / n, 2)
    for p in procs:
        p.stop()
    sink.stop()
    server.reset()
    return out


def _postfix_queued(jobs: list) -> dict:
    """Postfix, queued first (the smtp transport deferred, then released)."""
    n, out = len(jobs), {}
    sink = SmtpSink()
    postfix = BenchPostfix(sink.port).start(deferred=True)
    try:
        out["postfix_submit_s"] = round(submit(postfix.port, None, None, jobs), 2)
        while postfix.queued() < n:  # cleanup/qmgr still moving the last ones in
            time.sleep(0.2)
        released = time.perf_counter()
        postfix.release()
        done = sink.wait_for(n)
        out["postfix_queued_delivery_s"] = round(done - released, 2)
        out["postfix_queued_msg_per_s"] = round(n / (done - released))
    finally:
        postfix.stop()
        sink.stop()
    return out


def _postfix_e2e(jobs: list) -> dict:
    n, out = len(jobs), {}
    sink = SmtpSink()
    postfix = BenchPostfix(sink.port).start()
    try:
        started = time.perf_counter()
        out["postfix_e2e_submit_s"] = round(submit(postfix.port, None, None, jobs), 2)
        done = sink.wait_for(n)
        out["postfix_e2e_s"] = round(done - started, 2)
        out["postfix_e2e_msg_per_s"] = round(n / (done - started))
    finally:
        postfix.stop()
        sink.stop()
    return out


def run_newsletter(server: Runsmtp, login, n: int, signed: bool = False) -> dict:
    server.env["DKIM_SIGNING"] = "true" if signed else "false"
    data = newsletter_message(newsletter(40, 70, 14))
    recipients = [f"reader{i}@{DOMAINS[i % len(DOMAINS)]}" for i in range(n)]
    sink = SmtpSink()
    server.env["RELAY_ROUTES"] = f"*={HOST}:{sink.port}"
    server.start("submission")
    submit(server.tls_port, server.cafile, login, [(0, recipients, data)], clients=1)
    server.stop()
    ready = server.start("delivery")
    server.renderers_ready()
    cpu0, all0 = tree_cpu(server.proc.pid), tree_cpu(server.proc.pid, deep=True)
    done = sink.wait_for(n)
    all1 = tree_cpu(server.proc.pid, deep=True)
    out = {"recipients": n, "message_kib": round(len(data) / 1024, 1),
           "delivery_s": round(done - ready, 2), "rcpt_per_s": round(n / (done - ready)),
           "first_at_s": round(sink.first_at - ready, 2),
           "cpu_ms_per_rcpt": round(1000 * (tree_cpu(server.proc.pid) - cpu0) / n, 2),
           # With the render processes: the cost per recipient that load does not change.
           "cpu_ms_per_rcpt_all": round(1000 * (all1 - all0) / n, 2)}
    if signed:
        # 0: every copy was signed by the From domain (a failed or unaligned signing records
        # a warning event).
        out["signing_warnings"] = server.sql(
            "SELECT count(*) FROM events_event WHERE type = 'warning'")[0]
    server.stop()
    sink.stop()
    server.env.pop("DKIM_SIGNING", None)
    server.reset()
    return out


def run_latency(server: Runsmtp, login, rate: float, seconds: float) -> dict:
    port = free_port()
    times_file = server.workdir / "sink-times.txt"
    sink = subprocess.Popen([sys.executable, "-c", TIMING_SINK, str(port), str(times_file)],
                            stdout=subprocess.PIPE)
    sink.stdout.readline()
    server.env["RELAY_ROUTES"] = f"*={HOST}:{port}"
    server.start("submission,delivery")
    total = int(rate * seconds)
    accepted: dict[int, float] = {}
    threads_n = 10  # a slow commit holds one connection, not the schedule
    start = {}
    # The schedule starts once every connection has logged in (argon2 is not what is timed).
    logged_in = threading.Barrier(threads_n, action=lambda: start.update(t0=time.time() + 0.2))

    def paced(k: int) -> None:
        ctx = ssl.create_default_context(cafile=server.cafile)
        with smtplib.SMTP_SSL(HOST, server.tls_port, context=ctx, timeout=60) as s:
            s.login(*login)
            logged_in.wait()
            t0 = start["t0"]
            for seq in range(k, total, threads_n):
                due = t0 + seq / rate
                time.sleep(max(0.0, due - time.time()))
                data = (f"From: bench@sender.bench.test\r\nSubject: latency {seq}\r\n"
                        f"X-Seq: {seq}\r\n\r\n").encode() + make_message(5 * 1024, seq)
                s.sendmail("bench@sender.bench.test",
                           [f"r{seq}@{DOMAINS[seq % len(DOMAINS)]}"], data)
                accepted[seq] = time.time()

    threads = [threading.Thread(target=paced, args=(k,)) for k in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 60
    while True:
        got = dict(line.split() for line in times_file.read_text().splitlines() if line)
        if len(got) >= total or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    server.stop()
    sink.send_signal(signal.SIGTERM)
    sink.wait(10)
    server.reset()
    latencies = sorted(float(got[str(seq)]) - at for seq, at in accepted.items()
                       if str(seq) in got)
    late = [t - (start["t0"] + seq / rate) for seq, t in accepted.items()]
    return {"rate_msg_per_s": rate, "seconds": seconds, "sent": len(accepted),
            "delivered": len(latencies),
            "p50_ms": round(1000 * statistics.median(latencies)),
            "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))]),
            "max_ms": round(1000 * latencies[-1]),
            "offered_msg_per_s": round(len(accepted) / (max(accepted.values()) - start["t0"]),
                                       1),
            "client_250_behind_schedule_p99_ms": round(1000 * sorted(late)[int(0.99 * len(late))
                                                                         - 1])}


def run_rss(server: Runsmtp, login, recipients: int) -> dict:
    per_message = 1000
    body = make_message(5 * 1024, 7)
    jobs = [(m, [f"r{m}.{i}@{DOMAINS[i % len(DOMAINS)]}" for i in range(per_message)], body)
            for m in range(recipients // per_message)]
    sink = SmtpSink()
    server.env["RELAY_ROUTES"] = f"*={HOST}:{sink.port}"
    server.start("submission")
    submitted = submit(server.tls_port, server.cafile, login, jobs, clients=4)
    server.stop()
    ready = server.start("delivery")
    pid = server.proc.pid
    idle = rss_kib(pid)
    peak_tree = 0
    while True:
        peak_tree = max(peak_tree, tree_rss_kib(pid))
        n = server.delivered()
        if n >= recipients:
            break
        time.sleep(0.25)
    done = time.perf_counter()
    out = {"recipients": recipients, "messages": len(jobs), "submit_s": round(submitted, 1),
           "rss_at_start_mib": round(idle / 1024), "peak_rss_mib": round(rss_kib(pid, "VmHWM")
                                                                        / 1024),
           "peak_rss_with_render_processes_mib": round(peak_tree / 1024),
           "delivery_s": round(done - ready, 1), "rcpt_per_s": round(recipients / (done - ready)),
           "transactions": sink.count}
    server.stop()
    sink.stop()
    server.reset()
    return out


def py_spy(pid: int) -> subprocess.Popen | None:
    """With BENCH_PY_SPY=<file>: py-spy samples the process (its threads apart) into <file>
    (collapsed stacks) until it is sent SIGINT."""
    path = os.environ.get("BENCH_PY_SPY")
    if not path:
        return None
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen([binary, "record", "--pid", str(pid), "--format", "raw", "--threads",
                             "--rate", "250", "--nonblocking", "-o", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def descendants(pid: int) -> list[int]:
    """Every process under pid, whichever of its threads started it (the fork server is
    started from a thread: /proc/<pid>/task/<pid>/children does not list it)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in found:
            out += [child, *descendants(child)]
    return out


def tree_cpu(pid: int, deep: bool = False) -> float:
    """CPU seconds of pid and its children (deep: every descendant, the render processes
    under the fork server too)."""
    from smtp_accept_bench import cpu_seconds

    total = 0.0
    for p in [pid, *(descendants(pid) if deep else children(pid))]:
        try:
            total += cpu_seconds(p)
        except OSError:
            pass
    return total


def tree_rss_kib(pid: int) -> int:
    total = 0
    for p in [pid, *children(pid)]:
        try:
            total += rss_kib(p)
        except (OSError, RuntimeError):
            pass
    return total


def machine() -> dict:
    load = os.getloadavg()
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
            "loadavg_1_5_15": [round(x, 2) for x in load]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--only", default="plain,newsletter,newsletter_signed,latency,rss")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--newsletter-recipients", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rss-recipients", type=int, default=100_000)
    parser.add_argument("--plain-parts", default=",".join(PLAIN_PARTS),
                        help="which parts of plain to run, of "
                             f"{','.join(PLAIN_PARTS + MORE_PARTS)} (a quicker A/B: "
                             "queued,postfix-queued)")
    args = parser.parse_args()
    wanted = args.only.split(",")
    results: dict = {"machine_at_start": machine(), "database": "postgresql"}
    database_url = create_pg_database(args.postgres)
    try:
        with tempfile.TemporaryDirectory(prefix="smtpeter-bench-delivery-") as tmp:
            server = Runsmtp(Path(tmp), database_url, 25)  # each run sets its sink
            logins = server.setup()
            try:
                for name, fn in (
                    ("plain", lambda: run_plain(server, logins["plain"], args.messages,
                                                    args.plain_parts.split(","))),
                    ("newsletter", lambda: run_newsletter(server, logins["all"],
                                                          args.newsletter_recipients)),
                    ("newsletter_signed", lambda: run_newsletter(
                        server, logins["all"], args.newsletter_recipients, signed=True)),
                    ("latency", lambda: run_latency(server, logins["plain"], args.rate,
                                                    args.seconds)),
                    ("rss", lambda: run_rss(server, logins["plain"], args.rss_recipients)),
                ):
                    if name in wanted:
                        results[name] = fn()
                        print(f"{name}: {json.dumps(results[name])}", flush=True)
            finally:
                server.stop()
                log = server.log.read_text(errors="replace")
                if "Traceback" in log:
                    print("runsmtp log has a traceback:\n"
                          + log[log.index("Traceback") - 500:][:3000], flush=True)
    finally:
        drop_pg_database(database_url)
    results["machine_at_end"] = machine()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
