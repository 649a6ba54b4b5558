"""The one raw-SQL helper: statements built from a model's metadata once per database vendor,
and calls made on a live connection (reconnecting once). For the hot paths that skip the ORM's
query code; the SQL itself stays in the services module of the app that owns the table.

Also PostgreSQL's LISTEN/NOTIFY, the wake-up between processes: notify() in a transaction
sends with its commit, listen() keeps one psycopg async connection listening (reconnecting).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model

T = TypeVar("T")
log = logging.getLogger("smtpeter.db")
_CHANNEL = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")  # a plain identifier: no quoting needed


def insert_sql(connection: BaseDatabaseWrapper, model: type[Model], names: list[str]) -> str:
    """INSERT INTO the model's table (the columns of fields `names`) VALUES (%s, ...)."""
    qn = connection.ops.quote_name
    columns = ", ".join(qn(model._meta.get_field(n).column) for n in names)
    return (f"INSERT INTO {qn(model._meta.db_table)} ({columns}) "
            f"VALUES ({', '.join(['%s'] * len(names))})")


def select_sql(connection: BaseDatabaseWrapper, model: type[Model], names: list[str],
               where: str) -> str:
    """SELECT the columns of fields `names` FROM the model's table WHERE the column of field
    `where` (compared by the caller's own ``= %s`` or ``IN (...)``)."""
    qn = connection.ops.quote_name
    columns = ", ".join(qn(model._meta.get_field(n).column) for n in names)
    return (f"SELECT {columns} FROM {qn(model._meta.db_table)} "
            f"WHERE {qn(model._meta.get_field(where).column)}")


def per_vendor(build: Callable[[BaseDatabaseWrapper], T]) -> Callable[[BaseDatabaseWrapper], T]:
    """Decorate ``build(connection)`` (which makes statements for a connection) so that it runs
    once per database vendor; later calls return what it made for that vendor.

    The per-vendor statement cache of the project: SQL quoting differs by vendor, and building
    from model metadata on every call costs what the raw SQL was written to save.
    """
    made: dict[str, T] = {}

    @functools.wraps(build)
    def statements(connection: BaseDatabaseWrapper) -> T:
        try:
            return made[connection.vendor]
        except KeyError:
            made[connection.vendor] = value = build(connection)
            return value

    statements.cache_clear = made.clear  # type: ignore[attr-defined]
    return statements


def with_live_connection(fn: Callable[..., T], *args: object,
                         on_lost: Callable[[Exception], None] | None = None) -> T:
    """fn(*args) on this thread's database connection, which is kept between calls; if that
    connection turns out dead (a database restart, a terminated backend, a network cut), it is
    dropped and fn(*args) runs once more on a new one. If that fails too, the connection is
    dropped again, so that the thread's next call starts on a fresh one.

    Only for calls that are safe to repeat: a read, or one whole transaction. Django checks a
    connection's health only at request boundaries, which worker threads never reach: without
    this, one lost connection would fail every later call on the thread. on_lost(exc) is
    called when the first try met a dead connection (a log line, say).
    """
    try:
        return fn(*args)
    except (OperationalError, InterfaceError) as exc:
        if on_lost is not None:
            on_lost(exc)
        _close()
    try:
        return fn(*args)
    except Exception:
        _close()
        raise


def _close() -> None:
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - closing a dead connection may fail; it is gone
        pass


def notify(channel: str) -> None:
    """NOTIFY ``channel`` on this thread's connection: inside a transaction PostgreSQL sends
    it when that commits (never for a rollback), outside at once. Nothing on other databases
    (SQLite has one delivering process, woken in-process)."""
    if connection.vendor != "postgresql":
        return
    if not _CHANNEL.match(channel):
        raise ValueError(f"not a plain channel name: {channel!r}")
    with connection.cursor() as cursor:
        cursor.execute(f"NOTIFY {channel}")


async def listen(channel: str, on_notify: Callable[[], None], retry: float = 5.0) -> None:
    """Call on_notify() for every NOTIFY on ``channel``, and once after each (re)connect (a
    notification sent while not listening is lost), until cancelled. A lost connection is
    logged and opened again after ``retry`` seconds. Returns at once on other databases.

    Its own psycopg AsyncConnection on the event loop (Django's connections are per thread
    and synchronous), with the default database's connection parameters.
    """
    if connection.vendor != "postgresql":
        return
    if not _CHANNEL.match(channel):
        raise ValueError(f"not a plain channel name: {channel!r}")
    import psycopg

    # Django's extras (its sync cursor class, type adapters, prepare threshold) are not
    # connection parameters of libpq.
    params = {k: v for k, v in connection.get_connection_params().items()
              if k not in ("cursor_factory", "context", "prepare_threshold")}
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(autocommit=True, **params)
            async with conn:
                await conn.execute(f"LISTEN {channel}")
                on_notify()
                async for _ in conn.notifies():
                    on_notify()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the poll still finds the mail meanwhile
            log.warning("listening for %s failed (%s: %s); again in %g s", channel,
                        type(exc).__name__, exc, retry)
        await asyncio.sleep(retry)
