"""smtpeter_site.db: the per-vendor statement cache and "use a live connection, reconnect once"."""
from types import SimpleNamespace

import pytest
from django.db import OperationalError, connection

from smtpeter_site.db import per_vendor, with_live_connection


def test_statements_are_built_once_per_vendor():
    built = []

    @per_vendor
    def statements(conn):
        built.append(conn.vendor)
        return f"SELECT 1 -- {conn.vendor}"

    sqlite, pg = SimpleNamespace(vendor="sqlite"), SimpleNamespace(vendor="postgresql")
    assert [statements(c) for c in (sqlite, pg, sqlite, pg)] == [
        "SELECT 1 -- sqlite", "SELECT 1 -- postgresql"] * 2
    assert built == ["sqlite", "postgresql"]
    statements.cache_clear()
    statements(sqlite)
    assert built == ["sqlite", "postgresql", "sqlite"]


def test_other_errors_are_not_retried():
    calls = []

    def fails():
        calls.append(1)
        raise ValueError("not the connection")

    with pytest.raises(ValueError):
        with_live_connection(fails)
    assert calls == [1]


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_terminated_connection_is_replaced_once():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL, where a backend can be terminated")
    dead = _backend_pid()
    with pytest.raises(OperationalError), connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    lost = []
    assert with_live_connection(_backend_pid, on_lost=lost.append) != dead
    assert len(lost) == 1 and isinstance(lost[0], OperationalError)
    # A connection that dies again on the retry is dropped, so the next call starts fresh.
    def dies():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    with pytest.raises(OperationalError):
        with_live_connection(dies)
    assert with_live_connection(_backend_pid) > 0
