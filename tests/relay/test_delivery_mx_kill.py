"""kill -9 of runsmtp in the middle of an mx delivery run to the sink: after a restart every
recipient ends delivered or failed, none is lost, and only deliveries on the wire at the kill
may reach the sink twice (counted and printed)."""
import signal

import pytest

from credentials import services
from events.models import Event
from relay.models import Recipient

from .smtp_helpers import Server
from .test_delivery_mx import dns_server, mx_env, settled, sink, states, submit, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["dns_server", "sink"]  # module fixtures of this module too


@pytest.fixture
def servers(tls_files, tmp_path, dns_server, sink):
    started = []

    def start(roles, **env):
        server = Server(cert=tls_files[0], key=tls_files[1], workdir=tmp_path, roles=roles,
                        env_extra=mx_env(dns_server, sink, **env))
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop(signal.SIGKILL)


def test_kill_9_mid_delivery_run_loses_nothing(servers, sink, alice):
    login, password = services.create_login(alice)
    intake = servers("submission,mx")  # no delivery: the queue fills first
    total = 120
    ids = submit(intake, login, password, ["slow0.05-k@sink.test"], "kill", count=total)
    [refused] = submit(intake, login, password, ["reject-k@sink.test"], "kill refused")
    intake.stop()
    before = len(sink.received)
    done = Recipient.objects.filter(state__in=["delivered", "failed"])
    leased = Recipient.objects.exclude(leased_by="").filter(state="queued")
    slow = {"DELIVERY_BATCH": "4", "DELIVERY_CONCURRENCY": "1", "DELIVERY_LEASE": "2",
            "DELIVERY_POLL_INTERVAL": "0.2"}
    first = servers("delivery", **slow)
    wait_for(lambda: done.count() >= 10 and leased.exists(), what="deliveries under way")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    cut_at, in_flight = done.count(), leased.count()
    assert cut_at < total and in_flight > 0, (cut_at, in_flight)

    servers("delivery", DELIVERY_POLL_INTERVAL="0.2")
    wait_for(lambda: settled(ids + [refused]), timeout=120, what="every recipient settled")
    assert set(states(ids).values()) == {"delivered"}
    assert states([refused]) == {"reject-k@sink.test": "failed"}
    subjects = [tx.data.split(b"Subject: ")[1].split(b"\r\n")[0]
                for tx in sink.received[before:]]
    expected = {f"kill {n}".encode() for n in range(total)}
    assert set(subjects) == expected  # none lost
    duplicates = len(subjects) - len(expected)
    assert duplicates <= in_flight  # only what was on the wire at the kill
    assert Event.objects.filter(type="delivery", message__queue_id__in=ids).count() == total
    print(f"killed at {cut_at}/{total + 1} settled, {in_flight} leased by the dead process, "
          f"{duplicates} delivered twice")
