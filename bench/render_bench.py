"""Render and click-endpoint benchmark: `.venv/bin/python bench/render_bench.py [--quick]`.

1. Render time with all five features on for newsletters of about 10, 40 and 120 KB (style
   blocks, 30-150 links, images, an MSO button): the first recipient (prepare + render) and
   each further recipient of the same message. Targets: 40 KB first <= 3 ms, further <= 0.5 ms.
2. Click endpoint: redirects per second through gunicorn on 127.0.0.1 with a fresh SQLite
   database (every click writes an Event), spread over 300 recipients of one newsletter.
   Target >= 1,000/s. Bounded: a fixed number of requests and a time limit.
Prints a table and exits 1 when a target is missed.
"""
from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from newsletters import message, newsletter  # noqa: E402

SIZES = [(10, 30, 6), (40, 70, 14), (120, 150, 30)]  # KB, links, images
ALL = dict(clicktracking=True, openstracking=True, preventscam=True, bouncetracking=True,
           inlinecss=True)
TARGET_FIRST_40 = 3.0
TARGET_FURTHER = 0.5
TARGET_CLICKS = 1000.0


def bench_render(rounds: int, inliner: str) -> tuple[list[str], bool]:
    from features.render import RenderContext, prepare
    from features.tokens import derive_key

    tkey, vkey = derive_key("bench", "tracking"), derive_key("bench", "verp")

    def ctx(rid: int) -> RenderContext:
        return RenderContext(914_233, rid, "news@example.com", "https://track.example.com/t/",
                             tkey, vkey, "bounces.example.com", f"r{rid}@example.org")

    rows, ok = [], True
    for kb, n_links, n_images in SIZES:
        raw = message(newsletter(kb, n_links, n_images))
        prepare(raw, ALL, inliner)  # warm caches and imports
        first, further = [], []
        for i in range(rounds):
            t0 = time.perf_counter()
            prepared = prepare(raw, ALL, inliner)
            out = prepared.for_recipient(ctx(1_000_000 + i))
            t1 = time.perf_counter()
            for r in range(10):
                prepared.for_recipient(ctx(2_000_000 + r))
            t2 = time.perf_counter()
            first.append((t1 - t0) * 1000)
            further.append((t2 - t1) * 100)  # ms per recipient
        assert not out.warnings, out.warnings
        med_first, med_further = statistics.median(first), statistics.median(further)
        if kb == 40 and med_first > TARGET_FIRST_40:
            ok = False
        if med_further > TARGET_FURTHER and kb <= 40:
            ok = False
        rows.append(
            f"| {inliner} | {kb} KB ({len(raw) // 1024} KiB raw) | {len(prepared.links)} "
            f"| {len(prepared.images) - 1} | {med_first:.2f} (min {min(first):.2f}) "
            f"| {med_further:.3f} (min {min(further):.3f}) |"
        )
    return rows, ok


def _tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its children (gunicorn and its workers).

    Steadier than redirects/s on a VM whose speed drifts: compare this between versions.
    """
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
        pids += [int(c) for c in children]
    return total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(port: int, paths: list[str], count: int, deadline: float, out) -> None:
    """A minimal keep-alive HTTP/1.1 client: on two cores, a heavy client (http.client parses
    headers with the email package) would take CPU from the server it measures."""
    requests = [
        (f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
         "User-Agent: Mozilla/5.0 (X11; Linux x86_64) bench\r\n\r\n").encode()
        for p in paths
    ]
    length_re = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.I)
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    done = bad = 0
    buf = b""
    for i in range(count):
        if time.monotonic() > deadline:
            break
        sock.sendall(requests[i % len(requests)])
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        m = length_re.search(head)
        length = int(m.group(1)) if m else 0
        while len(buf) < length:
            buf += sock.recv(65536)
        buf = buf[length:]
        if head[9:12] != b"302":
            if not bad:
                print("first non-302 answer:", head[:200], buf[:300], file=sys.stderr)
            bad += 1
        done += 1
        if b"connection: close" in head.lower():
            sock.close()
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            buf = b""
    sock.close()
    out.put((done, bad))


# What delivery does for each message, as far as the click endpoint sees it: the link lists are
# stored when the message is first prepared (relay.queue.store_links; code from before issue 8
# has none and derives them at the first click instead).
_STORE = (
    "try:\n"
    "    from relay.queue import store_links\n"
    "except ImportError:\n"
    "    store_links = None\n"
    "def stored(m, prepared):\n"
    "    if store_links is not None:\n"
    "        store_links(m.pk, prepared.links, prepared.images)\n"
)
NEWSLETTER_SETUP = (
    "import re, sys\n"
    "from relay.models import Message, Recipient\n"
    "from events.models import Event\n"
    "from features import services\n"
    "sys.path.insert(0, BENCH_DIR)\n"
    "from newsletters import message, newsletter\n"
    + _STORE +
    "raw = message(newsletter(40, 70, 14))\n"
    "m = Message.objects.create(raw=raw, features={'clicktracking': True,"
    " 'openstracking': True}, mail_from='news@example.com', size=len(raw))\n"
    "prepared = services.prepare_message(raw, m.features)\n"
    "stored(m, prepared)\n"
    "for i in range(300):\n"
    "    r = Recipient.objects.create(message=m, address=f'reader{i}@example.org')\n"
    # Each click looks up the recipient's latest delivery (the "fast" flag): give it one.
    "    Event.objects.create(type='delivery', message=m, recipient=r)\n"
    "    body = services.render_for(m, r, prepared).message.decode()\n"
    "    for p in re.findall(r'https?://[^/]+(/t/c/[A-Za-z0-9_-]+)', body)[:5]: print(p)\n"
)
# --webhook: the newsletter's owner subscribes to clicks, so each click writes an outbox row.
WEBHOOK_SETUP = (
    "from django.contrib.auth import get_user_model\n"
    "from events import webhooks\n"
    "from events.models import WebhookEndpoint\n"
    "u = get_user_model().objects.create_user('webhook-bench')\n"
    "Message.objects.filter(pk=m.pk).update(owner=u)\n"
    "WebhookEndpoint.objects.create(owner=u, url='https://hooks.example.com/in',"
    " event_types=['click'], secret_encrypted=webhooks.encrypt_secret(webhooks.new_secret()))\n"
)
# Issue 8: messages of 1,000 links of 8 KB (8 MB each), clicked in turn, so that the click
# endpoint's per-process link cache (16 M URL characters) never holds the next one.
BIG_MESSAGES = 3
BIG_SETUP = (
    "import sys\n"
    "from relay.models import Message, Recipient\n"
    "from events.models import Event\n"
    "from features import services\n"
    "from features.tokens import CLICK, make_token\n"
    "sys.path.insert(0, BENCH_DIR)\n"
    "from newsletters import message\n"
    + _STORE +
    "key = services.tracking_key()\n"
    "per_message = []\n"
    f"for n in range({BIG_MESSAGES}):\n"
    "    html = '<html><head><style>p { margin: 0 }</style></head><body>' + ''.join(\n"
    "        f'<p><a href=\"https://example.com/{n}/{i}/' + 'x' * 8150\n"
    "        + f'\">link {i}</a></p>\\n'\n"
    "        for i in range(1000)) + '</body></html>'\n"
    "    raw = message(html)\n"
    "    m = Message.objects.create(raw=raw, features={'clicktracking': True,"
    " 'openstracking': True, 'inlinecss': True}, mail_from='news@example.com', size=len(raw))\n"
    "    prepared = services.prepare_message(raw, m.features)\n"
    "    assert len(prepared.links) == 1000, len(prepared.links)\n"
    "    stored(m, prepared)\n"
    "    paths = []\n"
    "    for i in range(3):\n"
    "        r = Recipient.objects.create(message=m, address=f'reader{i}@example.org')\n"
    "        Event.objects.create(type='delivery', message=m, recipient=r)\n"
    "        paths += [f'/t/c/{make_token(key, CLICK, m.pk, r.pk, x, prepared.links[x])}'\n"
    "                  for x in range(0, 1000, 7)]\n"
    "    per_message.append(paths)\n"
    "for row in zip(*per_message):\n"
    "    print(*row)\n"
)


def bench_clicks(total: int, seconds: float, workers: int, threads: int,
                 clients: int, database_url: str = "", big: bool = False,
                 webhook: bool = False) -> tuple[str, bool]:
    tmp = Path(tempfile.mkdtemp(prefix="smtpeter-bench-"))
    env = {
        **os.environ,
        "DATA_DIR": str(tmp),
        "DATABASE_URL": database_url or f"sqlite:///{tmp / 'bench.sqlite3'}",
        "SECRET_KEY": "bench-secret-key-not-for-production", "DEBUG": "false",
        "SECURE_SSL_REDIRECT": "false", "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CONN_MAX_AGE": "600", "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "smtpeter_site.settings",
    }
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    setup = (BIG_SETUP if big else NEWSLETTER_SETUP) + (WEBHOOK_SETUP if webhook else "")
    out = subprocess.run([python, "manage.py", "shell", "-c",
                          setup.replace("BENCH_DIR", repr(str(ROOT / "bench")))],
                         cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    paths = [w for w in out.split() if w.startswith("/t/c/")]
    if not big:
        # 300 recipients x 5 links, in shuffled order: clicks spread over recipients as in life.
        paths = sorted(set(paths))
        random.Random(7).shuffle(paths)
    assert paths, "no tracking links rendered"
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(python).parent / "gunicorn"), "smtpeter_site.wsgi", "-b", f"127.0.0.1:{port}",
         "-w", str(workers), "-k", "gthread", "--threads", str(threads), "--keep-alive", "30",
         "--log-level", "warning"],
        cwd=ROOT, env=env,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        # Warm every worker (imports, link cache) before timing.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for p in paths[:10 if big else 200]:
            conn.request("GET", p)
            conn.getresponse().read()
        conn.close()
        queue = multiprocessing.Queue()
        cpu_before = _tree_cpu(server.pid)
        deadline = time.monotonic() + seconds
        procs = [multiprocessing.Process(target=_client,
                                         args=(port, paths, total // clients, deadline, queue))
                 for _ in range(clients)]
        t0 = time.perf_counter()
        for p in procs:
            p.start()
        results = [queue.get(timeout=seconds + 30) for _ in procs]
        elapsed = time.perf_counter() - t0
        server_cpu = _tree_cpu(server.pid) - cpu_before
        for p in procs:
            p.join()
    finally:
        server.terminate()
        server.wait(timeout=10)
    done = sum(d for d, _ in results)
    bad = sum(b for _, b in results)
    rate = done / elapsed
    db = "PostgreSQL" if database_url.startswith("postgres") else "SQLite"
    what = (f"1,000 links of 8 KB, {BIG_MESSAGES} messages in turn" if big
            else "40 KB newsletter, 300 recipients") + (", webhook outbox row" if webhook else "")
    row = (f"| {what}: gunicorn gthread {workers}x{threads}, {clients} keep-alive clients, {db} "
           f"| {done} | {bad} | {elapsed:.2f} | {rate:,.0f} | {server_cpu * 1000 / done:.3f} |")
    return row, (big or rate >= TARGET_CLICKS) and bad == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (smoke run)")
    parser.add_argument("--no-clicks", action="store_true", help="skip the HTTP benchmark")
    parser.add_argument("--no-render", action="store_true", help="only the HTTP benchmark")
    parser.add_argument("--premailer", action="store_true", help="also time CSS_INLINER=premailer")
    parser.add_argument("--no-big", action="store_true",
                        help="skip the click case of messages with 1,000 links of 8 KB")
    parser.add_argument("--webhook", action="store_true",
                        help="the newsletter's owner has a webhook endpoint for clicks: every "
                             "click also writes an outbox row (nothing is sent)")
    parser.add_argument("--database-url", default="",
                        help="run the click benchmark on this (scratch!) database instead of a "
                             "fresh SQLite file; it is migrated and written to")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smtpeter_site.settings")
    rounds = 15 if args.quick else 100
    ok = True
    # Other work on the machine moves these numbers by tens of percent: say how busy it was.
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print("| inliner | newsletter | links | images | first recipient ms (median) "
          "| each further recipient ms (median) |")
    print("|---|---|---|---|---|---|")
    inliners = [] if args.no_render else ["css-inline"] + (["premailer"] if args.premailer else [])
    for inliner in inliners:
        rows, good = bench_render(rounds if inliner == "css-inline" else max(rounds // 5, 5),
                                  inliner)
        print("\n".join(rows), flush=True)
        ok = ok and (good or inliner != "css-inline")
    if not args.no_clicks:
        total = 3000 if args.quick else 20000
        print("\n| click endpoint | requests | non-302 | seconds | redirects/s "
              "| server CPU ms per click |")
        print("|---|---|---|---|---|---|", flush=True)
        row, good = bench_clicks(total=total, seconds=10 if args.quick else 30, workers=2,
                                 threads=1, clients=2, database_url=args.database_url,
                                 webhook=args.webhook)
        print(row, flush=True)
        ok = ok and good
        if not args.no_big:
            row, good = bench_clicks(total=300 if args.quick else 2000,
                                     seconds=10 if args.quick else 20, workers=2, threads=1,
                                     clients=2, database_url=args.database_url, big=True)
            print(row, flush=True)
            ok = ok and good
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(f"\ntargets: 40 KB first <= {TARGET_FIRST_40} ms, further <= {TARGET_FURTHER} ms, "
          f"clicks >= {TARGET_CLICKS:,.0f}/s -> {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
