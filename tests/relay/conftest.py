"""One runsmtp per test module, on free ports, against the test database."""
import pytest
from django.db import connection

from credentials import services
from relay.tls import write_self_signed

from .smtp_helpers import Server

# Small limits so that each one can be reached quickly by a test.
SERVER_ENV = {
    "SMTP_MAX_MESSAGE_SIZE": "200000",
    "SMTP_MAX_RECIPIENTS": "5",
    "SMTP_AUTH_MAX_FAILURES": "3",
    "SMTP_AUTH_FAILURE_WINDOW": "60",
    "SMTP_MAX_CONNECTIONS_PER_IP": "30",
    "SMTP_MAX_UNAUTH_CONNECTIONS_PER_IP": "30",
    "SMTP_IDLE_TIMEOUT": "5",
    "SMTP_TLS_HANDSHAKE_TIMEOUT": "2",
}

# The accept path without the delivery role: mail that these tests queue stays queued (the
# default DELIVERY_MODE=mx would send it on). Delivery has tests of its own.
ACCEPT_ROLES = "submission,mx"


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    write_self_signed(d / "cert.pem", d / "key.pem", ["relay.test", "localhost", "127.0.0.1"])
    return d / "cert.pem", d / "key.pem"


def start_server(django_db_blocker, tls_files, tmp_path_factory) -> Server:
    """A real runsmtp on free ports with SERVER_ENV, against the test database."""
    with django_db_blocker.unblock():
        connection.ensure_connection()
    return Server(
        cert=tls_files[0], key=tls_files[1], workdir=tmp_path_factory.mktemp("runsmtp"),
        env_extra=SERVER_ENV, roles=ACCEPT_ROLES,
    ).start()


@pytest.fixture(scope="module")
def smtp_server(django_db_setup, django_db_blocker, tls_files, tmp_path_factory):
    server = start_server(django_db_blocker, tls_files, tmp_path_factory)
    yield server
    server.stop()
    # Every bad input a module throws at the server gets a reply and a log line, never a
    # traceback (tests that break the database on purpose use a server of their own).
    log = server.log_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]


@pytest.fixture
def login(transactional_db, alice):
    """An enabled login with every feature off, and its password."""
    return services.create_login(alice)
