"""Webhook sender: events per second through events.sender to a local receiver, the latency
from an event's record() to its POST's arrival (p50, p99), and what an outbox row adds to
record().

1. record() cost: microseconds per record() of a delivery event, (a) no customer has an
   endpoint, (b) the message's owner has one subscribed endpoint (one outbox row each).
2. Throughput: a backlog of --events outbox rows drained by one WebhookSender (default
   settings: 100 POSTs at once, 5 per endpoint) to --endpoints endpoints on one receiver;
   events per second from its start to the last row marked delivered.
3. Latency: events recorded at --rate per second while the sender runs; event time (its
   Event.time) to the POST's arrival at the receiver. "same process": recorded in the
   sender's process, which wakes it at the commit (delivery, the intake); "other process":
   the sender learns of it by its poll (WEBHOOK_POLL_INTERVAL, 1 s), as for clicks and opens
   recorded by the web app.

The receiver is an aiohttp server in its own process on 127.0.0.1 answering 204.
Usage: python bench/webhook_bench.py [--events 3000] [--endpoints 10] [--rate 50]
       [--seconds 10] [--database-url URL]
Without --database-url a fresh SQLite file in a temporary folder; with it, a scratch
database (it is migrated and written to).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _receiver(port_queue) -> None:
    from aiohttp import web

    arrivals: list[tuple[int, float]] = []

    async def hook(request):
        body = await request.read()
        arrivals.append((json.loads(body)["data"]["id"], time.time()))
        return web.Response(status=204)

    async def results(request):
        return web.json_response(arrivals)

    async def main():
        app = web.Application()
        app.router.add_post("/hook/{n}", hook)
        app.router.add_get("/results", results)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_queue.put(site._server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


def _arrivals(port: int) -> dict[int, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/results") as r:  # noqa: S310
        return dict(json.load(r))


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="webhook-bench-")
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    else:
        os.environ.pop("DATABASE_URL", None)
        os.environ["DATA_DIR"] = tmp
    os.environ.update(WEBHOOK_ALLOW_HTTP="true", WEBHOOK_ALLOW_PRIVATE="true",
                      LOG_LEVEL="WARNING", DJANGO_SETTINGS_MODULE="smtpeter_site.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from events import services, webhooks
    from events.models import Event, WebhookDelivery, WebhookEndpoint
    from events.sender import WebhookSender
    from relay.models import Message, Recipient

    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    call_command("migrate", "--noinput", "-v0")
    db = connection.vendor
    users = get_user_model().objects
    owner = users.create_user(f"hooks-{os.getpid()}")
    other = users.create_user(f"plain-{os.getpid()}")
    message = Message.objects.create(raw=b"x", owner=owner, tags=["bench"])
    plain = Message.objects.create(raw=b"x", owner=other)
    rcpt = Recipient.objects.create(message=message, address="r@example.org")
    plain_rcpt = Recipient.objects.create(message=plain, address="r@example.org")

    # 1. record() with and without an outbox row (the endpoint's URL is never called here).
    def per_record(msg, r, n=2000) -> float:
        for _ in range(50):
            services.record("delivery", msg, r, {"code": 250, "text": "ok"})
        t0 = time.perf_counter()
        for _ in range(n):
            services.record("delivery", msg, r, {"code": 250, "text": "ok"})
        return (time.perf_counter() - t0) / n * 1e6

    bare = per_record(plain, plain_rcpt)
    ep, _ = webhooks.create_endpoint(owner, "http://127.0.0.1:9/x", ["delivery"])
    other_ep, _ = webhooks.create_endpoint(other, "http://127.0.0.1:9/x", ["click"])
    no_match = per_record(plain, plain_rcpt)  # the owner has an endpoint, not for deliveries
    with_row = per_record(message, rcpt)
    webhooks.delete_endpoint(ep)
    webhooks.delete_endpoint(other_ep)
    print(f"\n| record() of a delivery event, {db} | µs per call |\n|---|---|")
    print(f"| no endpoint anywhere | {bare:.0f} |")
    print(f"| the owner's endpoint is not subscribed to the type | {no_match:.0f} |")
    print(f"| one outbox row written | {with_row:.0f} |")

    queue = multiprocessing.Queue()
    receiver = multiprocessing.Process(target=_receiver, args=(queue,), daemon=True)
    receiver.start()
    port = queue.get(timeout=30)
    endpoints = [webhooks.create_endpoint(owner, f"http://127.0.0.1:{port}/hook/{i}",
                                          ["delivery"])[0] for i in range(args.endpoints)]
    WebhookDelivery.objects.all().delete()

    async def run_sender(until) -> WebhookSender:
        sender = WebhookSender()
        task = asyncio.get_running_loop().create_task(sender.run())
        await until(sender)
        await sender.stop()
        await asyncio.wait([task], timeout=5)
        return sender

    # 2. Throughput: a backlog drained.
    services.record_many([services.NewEvent("delivery", message.pk, rcpt.pk, {"code": 250})
                          for _ in range(args.events // args.endpoints)])
    backlog = WebhookDelivery.objects.filter(state="pending").count()
    pending = WebhookDelivery.objects.filter(state="pending")

    async def drained(sender, limit: float = 600):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and await asyncio.get_running_loop().run_in_executor(
                sender._pool, lambda: pending.exists()):
            await asyncio.sleep(0.05)

    t0 = time.perf_counter()
    asyncio.run(run_sender(drained))
    elapsed = time.perf_counter() - t0
    print(f"\n| throughput, {db}, {args.endpoints} endpoints | rows | seconds | events/s |")
    print("|---|---|---|---|")
    print(f"| backlog drained | {backlog} | {elapsed:.2f} | {backlog / elapsed:,.0f} |")

    # 3. Latency at a steady rate, recorded in this process (woken) or as another would (poll).
    print(f"\n| latency event → POST, {db}, {args.rate:g} events/s for {args.seconds:g} s "
          "| events | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|")
    for e in endpoints[1:]:  # one POST per event: its arrival is that event's
        webhooks.set_enabled(e, False)
    for woken in (True, False):
        first_id = (Event.objects.order_by("-id").values_list("id", flat=True).first() or 0)

        async def steady(sender, woken=woken):
            await asyncio.sleep(0.2)  # the sender has started (and set its listener)
            if not woken:
                webhooks.listener = None  # as if recorded by another process
            stop = threading.Event()

            def produce():
                gap = 1 / args.rate
                nxt = time.monotonic()
                end = nxt + args.seconds
                while time.monotonic() < end and not stop.is_set():
                    services.record("delivery", message, rcpt, {"code": 250})
                    nxt += gap
                    time.sleep(max(0.0, nxt - time.monotonic()))
                connection.close()

            await asyncio.get_running_loop().run_in_executor(None, produce)
            await drained(sender, limit=10)

        asyncio.run(run_sender(steady))
        arrivals = _arrivals(port)
        times = dict(Event.objects.filter(id__gt=first_id).values_list("id", "time"))
        lat = [(arrivals[i] - t.timestamp()) * 1000 for i, t in times.items() if i in arrivals]
        missing = sum(1 for i in times if i not in arrivals)
        label = "same process (woken)" if woken else "other process (poll 1 s)"
        print(f"| {label} | {len(lat)} | {statistics.median(lat):.1f} | {_pct(lat, 0.99):.1f} "
              f"| {max(lat):.1f} |" + (f" ({missing} not arrived)" if missing else ""))
    receiver.terminate()
    WebhookEndpoint.objects.all().delete()
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
