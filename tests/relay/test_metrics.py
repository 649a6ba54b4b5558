"""Prometheus metrics of a real runsmtp (METRICS_BIND) delivering to the test sink, and its
LOG_FORMAT=json log: counters, histograms, the queue gauges read at scrape time, open
sessions per role; one JSON object per line, queue ids in them, passwords never."""
import json
import signal
import smtplib
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from credentials import services

from .smtp_helpers import HOST, LineClient, Server, free_port
from .test_delivery_mx import dns_server, mx_env, settled, sink, submit, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["dns_server", "sink"]  # module fixtures of this module too


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def server(tls_files, tmp_path, dns_server, sink):
    port = free_port()
    server = Server(cert=tls_files[0], key=tls_files[1], workdir=tmp_path,
                    env_extra=mx_env(dns_server, sink, METRICS_BIND=f"{HOST}:{port}",
                                     LOG_FORMAT="json", DELIVERY_POLL_INTERVAL="0.2"))
    server.metrics_port = port
    yield server.start()
    server.stop(signal.SIGKILL)


def test_metrics_count_what_happened_and_read_the_queue(server, alice):
    login, password = services.create_login(alice)
    ids = submit(server, login, password, ["ok-m@sink.test", "tempfail-m@sink.test",
                                           "reject-m@sink.test"], "metrics",
                 rcpt_options=["NOTIFY=NEVER"])  # no DSN: three outcomes, no fourth
    with pytest.raises(smtplib.SMTPAuthenticationError):
        with smtplib.SMTP_SSL(HOST, server.tls_port, context=server.client_context()) as s:
            s.login(login.username, "wrong-password-Zq9")
    idle = LineClient(server, server.starttls_port)
    wait_for(lambda: settled(ids), what="the three outcomes")

    m = scrape(server.metrics_port)
    assert m[("smtpeter_accepted_total", (("kind", "submission"),))] == 1
    for outcome in ("delivered", "deferred", "failed"):
        assert m[("smtpeter_recipients_total", (("outcome", outcome),))] == 1, outcome
    # smtplib tries PLAIN, then LOGIN: two refused AUTH commands
    assert m[("smtpeter_auth_failures_total", (("reason", "invalid"),))] == 2
    assert m[("smtpeter_smtp_sessions", (("role", "starttls"),))] == 1
    assert m[("smtpeter_delivery_latency_seconds_count", ())] == 1
    assert m[("smtpeter_outbound_seconds_count", (("domain", "sink.test"),))] == 3
    assert m[("smtpeter_queue_up", ())] == 1
    assert m[("smtpeter_queue_depth", (("state", "deferred"),))] == 1
    assert m[("smtpeter_queue_depth", (("state", "queued"),))] == 0
    assert m[("smtpeter_queue_oldest_seconds", ())] > 0

    idle.close()
    wait_for(lambda: scrape(server.metrics_port)[("smtpeter_smtp_sessions",
                                                  (("role", "starttls"),))] == 0,
             what="the session closed")


def test_json_log_lines_carry_the_queue_id_and_never_a_password(server, alice):
    login, password = services.create_login(alice)
    [queue_id] = submit(server, login, password, ["ok-j@sink.test"], "json")
    with pytest.raises(smtplib.SMTPAuthenticationError):
        with smtplib.SMTP_SSL(HOST, server.tls_port, context=server.client_context()) as s:
            s.login(login.username, "Sekrit-wrong-77")
    wait_for(lambda: settled([queue_id]), what="delivery")
    text = server.log_text()
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert {"time", "level", "logger", "message", "process"} <= set(entries[0])
    about = [e for e in entries if queue_id in e["message"]]
    loggers = {e["logger"] for e in about}
    assert {"relay.smtpd", "relay.delivery"} <= loggers, about  # accepted, then the attempt
    assert any("status=delivered" in e["message"] for e in about)
    [closed] = [e for e in about if "closed: login=" in e["message"]]  # the session's line
    assert f"login={login.username} queued=1 ({queue_id})" in closed["message"]
    assert password not in text and "Sekrit-wrong-77" not in text
