"""Outbound SMTP client benchmark: relay.smtp_out vs aiosmtplib vs smtplib in threads.

Each client sends the same N plain 5 KB messages (one recipient each) to Postfix's smtp-sink
(C, stores nothing) on loopback over C connections, each connection reused for its share of
the messages (RSET between transactions where the client does that). Reported: messages per
second and the client process's CPU per message (user + system), which is what delivery
takes away from rendering on a 2-core machine.

  smtp_out    relay.smtp_out.Session, C sessions on one event loop (uvloop, as runsmtp runs)
  aiosmtplib  aiosmtplib.SMTP.sendmail, C clients on one event loop (uvloop)
  smtplib     smtplib.SMTP.sendmail, C threads with one connection each

Usage: python bench/outbound_bench.py [--messages 4000] [--connections 10] [--runs 3]
Needs /usr/sbin/smtp-sink (Debian's postfix package).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import smtplib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BODY = (b"From: bench@sender.test\r\nTo: rcpt@rcpt.test\r\nSubject: outbound bench\r\n\r\n"
        + b"".join(b"line %04d " % i + b"x" * 60 + b"\r\n" for i in range(70)))
MAIL_FROM = "bench@sender.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sink(port: int) -> subprocess.Popen:
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    proc = subprocess.Popen([sink, *user, f"127.0.0.1:{port}", "256"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("smtp-sink did not start")


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def shares(messages: int, connections: int) -> list[int]:
    return [messages // connections + (i < messages % connections) for i in range(connections)]


async def run_smtp_out(port: int, messages: int, connections: int) -> int:
    from relay.mx import Destination
    from relay.smtp_out import Rcpt, Session

    async def worker(count: int) -> int:
        session = Session(Destination("127.0.0.1", ("127.0.0.1",), port), "bench.test")
        ok = 0
        for i in range(count):
            result = await session.send(MAIL_FROM, [Rcpt(f"r{i}@rcpt.test")], BODY)
            ok += len(result.delivered)
        await session.quit()
        return ok

    return sum(await asyncio.gather(*(worker(n) for n in shares(messages, connections))))


async def run_aiosmtplib(port: int, messages: int, connections: int) -> int:
    import aiosmtplib

    async def worker(count: int) -> int:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname="bench.test",
                                 start_tls=False)
        await client.connect()
        ok = 0
        for i in range(count):
            errors, _ = await client.sendmail(MAIL_FROM, [f"r{i}@rcpt.test"], BODY)
            ok += 1 - len(errors)
        await client.quit()
        return ok

    return sum(await asyncio.gather(*(worker(n) for n in shares(messages, connections))))


def run_smtplib(port: int, messages: int, connections: int) -> int:
    counts: list[int] = []

    def worker(count: int) -> None:
        client = smtplib.SMTP("127.0.0.1", port, local_hostname="bench.test")
        ok = 0
        for i in range(count):
            ok += 1 - len(client.sendmail(MAIL_FROM, [f"r{i}@rcpt.test"], BODY))
        client.quit()
        counts.append(ok)

    threads = [threading.Thread(target=worker, args=(n,)) for n in shares(messages, connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


def measure(name: str, port: int, messages: int, connections: int) -> dict:
    import uvloop

    started, cpu0 = time.perf_counter(), cpu()
    if name == "smtplib":
        sent = run_smtplib(port, messages, connections)
    else:
        runner = run_smtp_out if name == "smtp_out" else run_aiosmtplib
        sent = uvloop.run(runner(port, messages, connections))
    wall, used = time.perf_counter() - started, cpu() - cpu0
    return {"client": name, "messages": sent, "msg_per_s": round(sent / wall),
            "client_cpu_ms_per_msg": round(1000 * used / max(sent, 1), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    sink = start_sink(port)
    try:
        measure("smtp_out", port, 200, 2)  # warm up imports and the sink
        measure("aiosmtplib", port, 200, 2)
        rows = []
        for run in range(args.runs):
            for name in ("smtp_out", "aiosmtplib", "smtplib"):
                row = measure(name, port, args.messages, args.connections)
                row["run"] = run + 1
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        sink.kill()
        sink.wait()


if __name__ == "__main__":
    main()
