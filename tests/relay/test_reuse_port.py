"""SMTP_REUSE_PORT: two runsmtp processes on one host bind the same ports and both serve
(the kernel spreads new connections between them); without it the second cannot start."""
import signal

import pytest

from .conftest import ACCEPT_ROLES, SERVER_ENV
from .smtp_helpers import LineClient, Server, free_port

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two(tls_files, tmp_path):
    started = []
    ports = {"tls_port": free_port(), "starttls_port": free_port(), "mx_port": free_port()}

    def start(name: str, **env) -> Server:
        workdir = tmp_path / name
        workdir.mkdir()
        server = Server(cert=tls_files[0], key=tls_files[1], workdir=workdir,
                        roles=ACCEPT_ROLES, env_extra={**SERVER_ENV, **env}, **ports)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop(signal.SIGKILL)


def test_two_processes_share_the_ports_and_both_take_connections(two):
    first = two("a", SMTP_REUSE_PORT="true")
    second = two("b", SMTP_REUSE_PORT="true")
    assert first.starttls_port == second.starttls_port
    for _ in range(60):
        c = LineClient(first, first.starttls_port)
        assert c.greeting.code == 220
        assert c.cmd("EHLO client.test").code == 250
        assert c.cmd("MAIL FROM:<a@example.com>").code == 530  # logged by whoever took it
        c.close()
    served = [s.log_text().count("refused 127.0.0.1 (starttls port): 530") for s in
              (first, second)]
    assert sum(served) == 60 and min(served) > 0, served

    # One stops (SIGTERM, exit 0); the other goes on alone on the same port.
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(15) == 0
    for _ in range(5):
        c = LineClient(second, second.starttls_port)
        assert c.greeting.code == 220
        c.close()


def test_without_reuse_port_a_second_process_cannot_bind(two):
    two("a")
    with pytest.raises(RuntimeError, match="address already in use"):
        two("b")
