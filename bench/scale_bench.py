"""Scale-out benchmark (issue 12): 1, 2 and 4 runsmtp processes on one PostgreSQL database, on
this machine, sharing one submission port (SMTP_REUSE_PORT=true: the kernel spreads the
connections over the processes).

For each process count N, two phases over the same plain 5 KB messages (10 domains):
  ingest    N processes with the submission role; 8 client processes (TLS + AUTH once per
            connection) submit --messages messages: accepted per second.
  delivery  the queued messages, then N processes with the delivery role to Postfix's
            smtp-sink (C, stores nothing): recorded delivered per second.
and for each phase the CPU per message of the runsmtp processes (/proc of them and their
children), of PostgreSQL's backends serving this database (/proc of every backend pid seen in
pg_stat_activity for it during the phase, sampled every 0.1 s), and of every postgres process
on the machine (other helpers' too: an upper bound); PostgreSQL transactions and rows written
per message (pg_stat_database of this database). Load averages before and after each phase:
the machine has 2 cores shared with other work, so the CPU-per-message figures are the ones to
build on; the rates say where two cores flatten the curve.

Reuses bench/delivery_bench.py's machinery (Runsmtp, SmtpSink, submit, tree_cpu).

Usage: python bench/scale_bench.py [--postgres URL] [--messages 3000] [--processes 1,2,4]
Needs smtp-sink (Postfix); a new database on --postgres, dropped at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from delivery_bench import Runsmtp, SmtpSink, machine, plain_jobs, submit, tree_cpu  # noqa: E402
from smtp_accept_bench import cpu_seconds, create_pg_database, drop_pg_database  # noqa: E402


def postgres_pids() -> list[int]:
    """Every process of the PostgreSQL server on this machine (comm "postgres")."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def server_cpu() -> float:
    """CPU seconds of every postgres process, plus what the postmaster's ended children
    (backends that came and went) used: cutime + cstime of the postmaster."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in postgres_pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
        if fields[1] == "1" or not Path(f"/proc/{fields[1]}/comm").exists() or Path(
                f"/proc/{fields[1]}/comm").read_text().strip() != "postgres":
            total += (int(fields[13]) + int(fields[14])) / tick  # the postmaster
    return total


def cpu_of(pids) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            out[pid] = cpu_seconds(pid)
        except (OSError, IndexError):
            pass
    return out


class PgMeter:
    """CPU of this database's backends (pids from pg_stat_activity, sampled: a backend that
    ends between two samples loses at most 0.1 s of its CPU) and of the whole server."""

    def __init__(self, server: Runsmtp) -> None:
        self.server = server
        self.db = server.database_url.rsplit("/", 1)[1]
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()

    def _backends(self, conn) -> list[int]:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> "
                            "pg_backend_pid()", (self.db,)).fetchall()
        return [r[0] for r in rows]

    def _sample(self, conn) -> None:
        for pid, cpu in cpu_of(self._backends(conn)).items():
            self.first.setdefault(pid, cpu if self.started else 0.0)
            self.last[pid] = cpu

    def _stats(self) -> tuple[int, int]:
        return self.server.sql(
            "SELECT xact_commit + xact_rollback, tup_inserted + tup_updated + tup_deleted "
            f"FROM pg_stat_database WHERE datname = '{self.db}'")

    def __enter__(self) -> PgMeter:
        import psycopg

        self.conn = psycopg.connect(self.server.database_url, autocommit=True)
        self.server.sql("SELECT pg_stat_clear_snapshot()")
        self.stats0 = self._stats()
        self.all0 = server_cpu()
        self.started = True
        self._sample(self.conn)  # backends alive now count from here
        self.started = False  # the ones that come later count from 0
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            self._sample(self.conn)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join()
        self._sample(self.conn)
        self.conn.close()
        self.all_cpu = server_cpu() - self.all0
        self.own_cpu = sum(self.last[p] - self.first[p] for p in self.last)

    def count_statements(self) -> None:
        """Transactions and rows written, read once the runsmtp processes have stopped: a
        backend reports its counts at most once a second and when it ends."""
        time.sleep(1.5)
        stats1 = self._stats()
        self.xacts, self.writes = (b - a for a, b in zip(self.stats0, stats1, strict=True))

    def figures(self, n: int, prefix: str) -> dict:
        return {f"{prefix}_pg_backends_cpu_ms_per_msg": round(1000 * self.own_cpu / n, 3),
                f"{prefix}_pg_all_cpu_ms_per_msg": round(1000 * self.all_cpu / n, 3),
                f"{prefix}_pg_xacts_per_msg": round(self.xacts / n, 2),
                f"{prefix}_pg_rows_written_per_msg": round(self.writes / n, 2)}


def wait_recorded(server: Runsmtp, n: int, timeout: float = 300) -> float:
    """Until n recipients are recorded delivered, polled on one connection (a new connection
    per poll would add backends' start-up to the server's CPU); the perf_counter() time."""
    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(server.database_url, autocommit=True) as conn:
        while conn.execute("SELECT count(*) FROM relay_recipient "
                           "WHERE state = 'delivered'").fetchone()[0] < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"fewer than {n} recorded delivered in {timeout} s")
            time.sleep(0.05)
    return time.perf_counter()


def children_cpu() -> float:
    """CPU seconds of this process's ended children: the submission client processes once
    their pool is gone (the runsmtp processes and the sink are not reaped meanwhile)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run(server: Runsmtp, login, processes: int, n: int) -> dict:
    jobs = plain_jobs(n)
    sink = SmtpSink()
    server.env.update(RELAY_ROUTES=f"*=127.0.0.1:{sink.port}",
                      SMTP_REUSE_PORT="true", DELIVERY_POLL_INTERVAL="0.2")
    workers = [server] + [server.sibling(f"scale{i}") for i in range(1, processes)]
    out: dict = {"processes": processes, "messages": n}

    # ingest: N submission processes on one port
    for w in workers:
        w.start("submission")
    out["ingest_load_before"] = load()
    cpu0 = sum(tree_cpu(w.proc.pid) for w in workers)
    clients0 = children_cpu()
    with PgMeter(server) as pg:
        seconds = submit(server.tls_port, server.cafile, login, jobs)
    out["ingest_clients_cpu_ms_per_msg"] = round(1000 * (children_cpu() - clients0) / n, 3)
    cpu = sum(tree_cpu(w.proc.pid) for w in workers) - cpu0
    out["ingest_load_after"] = load()
    out["ingest_s"] = round(seconds, 2)
    out["ingest_msg_per_s"] = round(n / seconds)
    out["ingest_runsmtp_cpu_ms_per_msg"] = round(1000 * cpu / n, 3)
    for w in workers:
        w.stop()
    pg.count_statements()
    out.update(pg.figures(n, "ingest"))

    # delivery: the queued messages held back until N delivery processes are all ready,
    # then due at once (each polls every DELIVERY_POLL_INTERVAL)
    server.sql("UPDATE relay_recipient SET next_attempt_at = now() + interval '1 hour' "
               "WHERE state = 'queued'")
    for w in workers:
        w.start("delivery")
    time.sleep(1)
    out["delivery_load_before"] = load()
    cpu0 = sum(tree_cpu(w.proc.pid) for w in workers)
    with PgMeter(server) as pg:
        started = time.perf_counter()
        server.sql("UPDATE relay_recipient SET next_attempt_at = now() WHERE state = 'queued'")
        done = wait_recorded(server, n)
    cpu = sum(tree_cpu(w.proc.pid) for w in workers) - cpu0
    out["delivery_load_after"] = load()
    out["delivery_s"] = round(done - started, 2)
    out["delivery_msg_per_s"] = round(n / (done - started))
    out["delivery_runsmtp_cpu_ms_per_msg"] = round(1000 * cpu / n, 3)
    out["sink_transactions"] = sink.count
    for w in workers:
        w.stop()
    pg.count_statements()
    out.update(pg.figures(n, "delivery"))
    sink.stop()
    server.reset()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--processes", default="1,2,4")
    args = parser.parse_args()
    results: dict = {"machine_at_start": machine(), "runs": []}
    database_url = create_pg_database(args.postgres)
    try:
        with tempfile.TemporaryDirectory(prefix="smtpeter-bench-scale-") as tmp:
            server = Runsmtp(Path(tmp), database_url, 25)
            logins = server.setup()
            try:
                for processes in (int(p) for p in args.processes.split(",")):
                    result = run(server, logins["plain"], processes, args.messages)
                    results["runs"].append(result)
                    print(json.dumps(result), flush=True)
            finally:
                server.stop()
                for log in Path(tmp).glob("*.log"):
                    text = log.read_text(errors="replace")
                    if "Traceback" in text:
                        print(f"{log.name} has a traceback:\n"
                              + text[text.index("Traceback") - 500:][:3000], flush=True)
    finally:
        drop_pg_database(database_url)
    results["machine_at_end"] = machine()
    print(json.dumps(results))
    print(table(results["runs"]))


COLUMNS = [  # (heading, key): per phase
    ("msg/s", "msg_per_s"), ("runsmtp CPU ms/msg", "runsmtp_cpu_ms_per_msg"),
    ("PG backends CPU ms/msg", "pg_backends_cpu_ms_per_msg"),
    ("all postgres CPU ms/msg", "pg_all_cpu_ms_per_msg"), ("PG xacts/msg", "pg_xacts_per_msg"),
    ("load before", "load_before")]


def table(runs: list[dict]) -> str:
    """The runs as a Markdown table, one row per process count and phase."""
    lines = ["| processes | phase | " + " | ".join(h for h, _ in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 2) + "|"]
    for run in runs:
        for phase in ("ingest", "delivery"):
            cells = [str(run[f"{phase}_{key}"]) for _, key in COLUMNS]
            lines.append(f"| {run['processes']} | {phase} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
