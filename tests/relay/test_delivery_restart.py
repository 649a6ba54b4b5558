"""Delivery across runsmtp processes of their own, in capture mode: a kill -9 mid-run loses
nothing, held mail waits for its release, delivery outlives cut database connections.

Apart from test_delivery.py: its module-scoped server (every role) would be woken by these
tests' mail (NOTIFY on PostgreSQL) and deliver what they need to stay queued."""
import signal
import time

import pytest
from django.db import connection

from credentials import services
from events.models import Event
from relay.models import Attempt, Capture, Recipient

from .smtp_helpers import Server
from .test_delivery import CAPTURE_ENV, HTML, delivered, submit, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def servers(tls_files, tmp_path):
    started = []

    def start(roles: str | None, **env) -> Server:
        server = Server(cert=tls_files[0], key=tls_files[1], workdir=tmp_path, roles=roles,
                        env_extra={**CAPTURE_ENV, **env})
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop(signal.SIGKILL)


def test_kill_9_mid_delivery_loses_nothing(servers, alice):
    login, password = services.create_login(alice, features=["clicktracking"])
    intake = servers("submission,mx")  # no delivery: the queue fills first
    total = 300
    queue_ids = submit(intake, login, password, ["x@example.org"], HTML, count=total)
    intake.stop()
    done = Recipient.objects.filter(state="delivered")
    # Small claims and few sends at once: the run lasts long enough to be cut in the middle.
    slow = {"DELIVERY_BATCH": "4", "DELIVERY_CONCURRENCY": "1", "DELIVERY_LEASE": "2",
            "DELIVERY_POLL_INTERVAL": "0.2"}
    first = servers("delivery", **slow)
    leased = Recipient.objects.exclude(leased_by="").exclude(state="delivered")
    # Killed while it holds claims: those must come back when their leases expire.
    wait_for(lambda: done.count() >= 10, what="deliveries under way")

    def frozen_holding_claims() -> bool:
        # Frozen (SIGSTOP), the process can neither finish nor take claims: what is leased now
        # is what the kill cuts. Between two claims it holds none; let it go on and try again.
        first.proc.send_signal(signal.SIGSTOP)
        if leased.exists():
            return True
        first.proc.send_signal(signal.SIGCONT)
        time.sleep(0.05)
        return False

    wait_for(frozen_holding_claims, what="the worker frozen while it holds claims")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    cut_at, in_flight = done.count(), leased.count()
    assert cut_at < total and in_flight > 0, (cut_at, in_flight)

    servers("delivery", DELIVERY_POLL_INTERVAL="0.2")
    wait_for(lambda: delivered(queue_ids), timeout=120, what="every recipient delivered")
    assert Capture.objects.count() == total
    assert Event.objects.filter(type="delivery").count() == total  # each exactly once
    assert Attempt.objects.filter(outcome="delivered").count() == total
    print(f"killed at {cut_at}/{total} delivered, {in_flight} leased by the dead process")


def test_held_mail_waits_for_its_release(servers, alice):
    login, password = services.create_login(alice)
    intake = servers("submission,mx")
    held, other = submit(intake, login, password, ["h@example.org"], HTML, count=2)
    from django.core.management import call_command

    call_command("mailq", "--hold", held)
    servers("delivery", DELIVERY_POLL_INTERVAL="0.2")
    wait_for(lambda: delivered([other]), what="the other message")
    time.sleep(1)  # several polls
    assert Recipient.objects.get(message__queue_id=held).state == "held"
    call_command("mailq", "--release", held)
    wait_for(lambda: delivered([held]), what="the released message")


def test_delivery_outlives_cut_database_connections(servers, alice):
    if connection.vendor != "postgresql":
        pytest.skip("cuts PostgreSQL connections (runs in the PostgreSQL run of the suite)")
    from .test_db_reconnect import _terminate_other_backends

    # A server of its own: the queue writer logs the cut with a traceback.
    capture_server = servers(None)
    login, password = services.create_login(alice)
    [before] = submit(capture_server, login, password, ["r1@example.org"], HTML)
    wait_for(lambda: delivered([before]), what="delivery before the cut")
    assert _terminate_other_backends() >= 2
    [after] = submit(capture_server, login, password, ["r2@example.org"], HTML)
    # The claim this message wakes meets a cut connection: it is made again on a new one,
    # not left to the next poll (120 s here).
    wait_for(lambda: delivered([after]), timeout=20, what="delivery after the cut")
