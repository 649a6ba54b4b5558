"""Prometheus metrics of a runsmtp process (prometheus-client): the counters and histograms
that relay code feeds with one call per outcome, the queue collector that reads the database
at scrape time, and the endpoint on METRICS_BIND.

Each runsmtp process serves its own endpoint (one scrape target per process, summed in
PromQL), not prometheus-client's multiprocess mode: that mode shares files in one directory,
so it works on one host only, while runsmtp processes run on several hosts; and a process
that is killed leaves its files behind. The queue gauges come from the shared database, so
every process reports the same values: take max() over processes, not sum().

Hooks cost a dict lookup and an atomic add (bench/metrics_bench.py measures them).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("relay.metrics")
REGISTRY = CollectorRegistry()
PENDING_STATES = ("queued", "deferred", "held", "intake")
MAX_DOMAINS = 200  # destination domains with a label of their own; the rest are "other"

ACCEPTED = Counter("smtpeter_accepted", "Messages accepted (250 after commit)", ["kind"],
                   registry=REGISTRY)
OUTCOMES = Counter("smtpeter_recipients", "Recipient outcomes of delivery attempts: delivered, "
                   "deferred, failed", ["outcome"], registry=REGISTRY)
INTAKE = Counter("smtpeter_intake_events", "Events read from mail that came back: bounce, "
                 "complaint, response", ["type"], registry=REGISTRY)
AUTH_FAILURES = Counter("smtpeter_auth_failures", "Refused AUTH attempts", ["reason"],
                        registry=REGISTRY)
SESSIONS = Gauge("smtpeter_smtp_sessions", "Open SMTP sessions", ["role"], registry=REGISTRY)
LATENCY = Histogram(
    "smtpeter_delivery_latency_seconds", "From acceptance (250) to delivered",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
    registry=REGISTRY)
REPLY_TIME = Histogram(
    "smtpeter_outbound_seconds", "Outbound SMTP transaction time (connect or reuse to the "
    "final reply) per destination domain", ["domain"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300), registry=REGISTRY)

_reply_children = {}  # domain -> its REPLY_TIME child, at most MAX_DOMAINS of them
_outcome_children = {o: OUTCOMES.labels(o) for o in ("delivered", "deferred", "failed")}
_session_children = {}


# -- hooks (one call each from relay code) -------------------------------------------------


def accepted(kind: str) -> None:
    ACCEPTED.labels(kind).inc()


def session(role: str, delta: int) -> None:
    """A session of ``role`` opened (+1) or closed (-1)."""
    child = _session_children.get(role)
    if child is None:
        child = _session_children[role] = SESSIONS.labels(role)
    child.inc(delta)


def auth_failed(reason: str) -> None:
    AUTH_FAILURES.labels(reason).inc()


def outcomes(domain: str, received_at: datetime | None, results: Iterable) -> None:
    """One transaction's recipient outcomes (each with .status and .duration_ms)."""
    now = time.time()
    reply_time = _reply_children.get(domain)
    if reply_time is None:
        label = domain if len(_reply_children) < MAX_DOMAINS else "other"
        reply_time = REPLY_TIME.labels(label)
        if label == domain:
            _reply_children[domain] = reply_time
    for o in results:
        status = o.status if o.status in _outcome_children else "deferred"
        _outcome_children[status].inc()
        if o.duration_ms:
            reply_time.observe(o.duration_ms / 1000)
        if status == "delivered" and received_at is not None:
            LATENCY.observe(max(0.0, now - received_at.timestamp()))


def failed_without_attempt(count: int) -> None:
    """Recipients failed before any attempt (suppressed)."""
    _outcome_children["failed"].inc(count)


def intake_event(event_type: str) -> None:
    if event_type:
        INTAKE.labels(event_type).inc()


# -- the queue, read at scrape time ----------------------------------------------------------


def webhook_backlog() -> int:
    """Undelivered webhook POSTs (events.webhooks.backlog)."""
    from events.webhooks import backlog  # noqa: PLC0415 - events imports relay: no cycle at load

    return backlog()


class QueueCollector(Collector):
    """Queue depth by state, the age of the oldest pending recipient and the webhook
    backlog: two indexed queries per scrape (relay.services.queue_depth, oldest_pending).
    own_thread: the scrape runs on a thread of its own, whose connection is closed after."""

    def __init__(self, own_thread: bool = True):
        self.own_thread = own_thread

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from django.db import connection

        from . import services

        try:
            depth = services.queue_depth()
            oldest = services.oldest_pending()
            backlog = webhook_backlog()
        except Exception as exc:  # noqa: BLE001 - a scrape must answer; up=0 says why
            log.warning("metrics: queue not readable (%s: %s)", type(exc).__name__, exc)
            yield GaugeMetricFamily("smtpeter_queue_up", "1 if the queue was readable", value=0)
            return
        finally:
            if self.own_thread:
                connection.close()  # prometheus-client starts a thread per request
        yield GaugeMetricFamily("smtpeter_queue_up", "1 if the queue was readable", value=1)
        g = GaugeMetricFamily("smtpeter_queue_depth", "Recipients by state (pending states)",
                              labels=["state"])
        for state in PENDING_STATES:
            g.add_metric([state], depth.get(state, 0))
        yield g
        yield GaugeMetricFamily(
            "smtpeter_queue_oldest_seconds",
            "Age of the oldest queued or deferred recipient's message (0: none)",
            value=0 if oldest is None else max(0.0, time.time() - oldest.timestamp()))
        if backlog is not None:
            yield GaugeMetricFamily("smtpeter_webhook_backlog", "Webhook posts not yet "
                                    "delivered", value=backlog)


REGISTRY.register(QueueCollector())
WEB_REGISTRY = CollectorRegistry()  # the web app's /metrics: the queue only
WEB_REGISTRY.register(QueueCollector(own_thread=False))


def serve(bind: str) -> None:
    """Serve REGISTRY on ``bind`` ("host:port") from a thread of its own."""
    from prometheus_client import start_http_server

    host, _, port = bind.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=REGISTRY)
    log.info("metrics on http://%s/metrics", bind)
