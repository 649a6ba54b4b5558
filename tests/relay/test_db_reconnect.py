"""runsmtp outlives a dropped PostgreSQL connection (a restart, a failover, an idle timeout):
the AUTH threads and the queue writer reconnect, and the AUTH that meets the dead connection
is answered normally, not with 451.

PostgreSQL only: it is the database whose connections can be cut under a running server
(SQLite has none). CI runs the suite on PostgreSQL too, so this test runs there."""
import time

import pytest
from django.db import connection

from credentials import services
from credentials.models import Login
from relay.models import Message

from .conftest import start_server
from .smtp_helpers import LineClient
from .test_submission import authed, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pg_server(django_db_setup, django_db_blocker, tls_files, tmp_path_factory):
    if connection.vendor != "postgresql":
        pytest.skip("cuts PostgreSQL connections (runs in the PostgreSQL run of the suite)")
    server = start_server(django_db_blocker, tls_files, tmp_path_factory)
    yield server
    server.stop()


def _terminate_other_backends() -> int:
    """Cut every connection to the test database but ours; the count of those cut."""
    others = ("FROM pg_stat_activity WHERE datname = current_database() "
              "AND pid <> pg_backend_pid()")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM (SELECT pg_terminate_backend(pid) {others}) t")
        cut = cursor.fetchone()[0]

    def gone():
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) {others}")
            return cursor.fetchone()[0] == 0

    assert wait_for(gone), "backends still there"
    return cut


def _auth(server, login) -> int:
    c = LineClient(server, server.tls_port, implicit_tls=True)
    c.cmd("EHLO client.test")
    code = c.auth_plain(login[0].username, login[1]).code
    c.close()
    return code


def test_auth_and_queue_survive_terminated_backends(pg_server, login, alice):
    second = services.create_login(alice)
    # Give the argon2 thread, the lookup thread and the queue writer each a connection.
    assert _auth(pg_server, login) == 235  # argon2
    assert _auth(pg_server, login) == 235  # the cache: one lookup query
    c = authed(pg_server, login)
    assert c.send_message(b"Subject: before\r\n\r\nx\r\n").code == 250
    c.close()

    assert _terminate_other_backends() >= 2
    time.sleep(0.2)

    # The very AUTH that meets a dead connection works (one retry on a new connection), for
    # the cached path (lookup thread) and for an argon2 check (argon2 thread) alike.
    assert [_auth(pg_server, login) for _ in range(3)] == [235] * 3
    assert _auth(pg_server, second) == 235
    # And the queue writer stores a message after its connection was cut.
    c = authed(pg_server, second)
    assert c.send_message(b"Subject: after\r\n\r\nx\r\n").code == 250
    assert Message.objects.count() == 2
    # The second login's last use went to the writer first, on the cut connection: it is
    # written all the same, not dropped with the failed commit.
    assert Login.objects.get(pk=second[0].pk).last_used is not None
    log = pg_server.log_text()
    assert "session error" not in log and "451 4.3.0" not in log, log[-3000:]
    assert "database connection lost" in log
