"""Group commit: one writer thread stores whatever accepted messages are waiting, in one
transaction, and wakes each SMTP session once the commit that holds its message is done.

"250 queued" is sent only after that wake-up, so an acknowledged message is on disk. On
SQLite the writer's connection uses synchronous=FULL: a commit survives power loss, not only
a crash of the process. A batch that fails is retried one message per transaction, so one bad
message cannot fail its neighbours; a message whose own transaction fails leaves no row behind.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from features.mime import header_end
from features.overrides import apply_overrides, max_deliver_seconds
from smtpeter_site.db import insert_sql, notify, per_vendor

from .headers import subject_of

log = logging.getLogger("relay.queue")
MAX_BATCH = 200
NEW_MAIL = "smtpeter_new_mail"  # NOTIFY channel: mail due for delivery was committed


def announce_new_mail() -> None:
    """Wake the delivering processes listening on PostgreSQL (relay.delivery) when the
    current transaction commits; the poll (DELIVERY_POLL_INTERVAL) is the fallback."""
    notify(NEW_MAIL)


@dataclass
class Submission:
    queue_id: str
    kind: str
    login_id: int | None
    owner_id: int | None
    mail_from: str
    ret: str
    envid: str
    body: str
    client_ip: str | None
    helo: str
    tls_version: str
    raw: bytes | bytearray
    recipients: list[tuple[str, str, str]] = field(default_factory=list)  # address, notify, orcpt


def _header_bytes(raw: bytes | bytearray) -> bytes:
    fields, body = header_end(raw)
    return bytes(raw[:fields] if fields < body else raw[:65536])


_MESSAGE_COLUMNS = (
    "queue_id", "kind", "login", "owner", "received_at", "mail_from", "ret", "envid", "body",
    "features", "tags", "client_ip", "helo", "tls_version", "size", "raw", "max_deliver_until",
    "subject",
)
_RECIPIENT_COLUMNS = (
    "message", "address", "notify", "orcpt", "state", "attempts", "next_attempt_at",
    "last_response", "updated",
)
@per_vendor
def _statements_for(conn) -> tuple[str, str]:
    from .models import Message, Recipient

    return (
        insert_sql(conn, Message, _MESSAGE_COLUMNS)
        + " RETURNING " + conn.ops.quote_name(Message._meta.pk.column),
        insert_sql(conn, Recipient, _RECIPIENT_COLUMNS),
    )


def _statements() -> tuple[str, str]:
    """INSERT for messages (RETURNING id), INSERT for recipients."""
    return _statements_for(connection)


def write_batch(batch: list[Submission], touched: set[int]) -> list[int]:
    """Store ``batch`` (and last-used times) in one transaction; returns the message ids.

    Plain SQL through Django's connection, values prepared by the model fields where the
    backend needs it (dates, JSON, bytes): building ORM objects held the GIL long enough to
    slow the event loop down.
    """
    from credentials.services import featuresets as login_featuresets
    from credentials.services import touch_last_used

    from .models import Message

    msg_sql, rcpt_sql = _statements()
    prep = {
        name: Message._meta.get_field(name).get_db_prep_save
        for name in ("received_at", "features", "tags", "raw", "max_deliver_until")
    }
    lifetime = settings.DELIVERY_MAX_LIFETIME
    now = timezone.now()
    now_db = prep["received_at"](now, connection)
    ids = []
    with transaction.atomic(), connection.cursor() as cursor:
        # Read in this transaction: the feature set as it is at this commit.
        featuresets = login_featuresets(s.login_id for s in batch if s.login_id)
        rcpt_rows = []
        for s in batch:
            featureset = featuresets.get(s.login_id)
            head = _header_bytes(s.raw)
            if featureset is not None:
                # The feature set as it is at this commit, with the message's header overrides.
                features, tags = apply_overrides(featureset, head)
            else:
                features, tags = {}, []
            # Kept only when it ends delivery sooner than DELIVERY_MAX_LIFETIME would.
            seconds = max_deliver_seconds(head) if s.kind == "submission" else None
            until = (prep["max_deliver_until"](now + timedelta(seconds=seconds), connection)
                     if seconds is not None and seconds < lifetime else None)
            # Mail in on the mx role without AUTH is intake: never claimed for delivery.
            intake = s.kind == "bounce"
            cursor.execute(msg_sql, (
                s.queue_id, s.kind, s.login_id if featureset is not None else None, s.owner_id,
                now_db, s.mail_from, s.ret, s.envid, s.body,
                prep["features"](features, connection), prep["tags"](tags, connection),
                s.client_ip, s.helo[:255], s.tls_version, len(s.raw),
                prep["raw"](s.raw, connection), until, subject_of(head),
            ))
            message_id = cursor.fetchone()[0]
            ids.append(message_id)
            for address, notify, orcpt in s.recipients:
                rcpt_rows.append((message_id, address, notify, orcpt,
                                  "intake" if intake else "queued", 0,
                                  None if intake else now_db, "", now_db))
        if rcpt_rows:
            cursor.executemany(rcpt_sql, rcpt_rows)
            if any(row[4] == "queued" for row in rcpt_rows):
                announce_new_mail()
        if touched:
            touch_last_used(touched, now)
    return ids


class GroupWriter:
    """Owns the writer thread; ``await store(sub)`` returns once ``sub`` is committed."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 on_commit: Callable[[], None] | None = None):
        self.loop = loop
        self.on_commit = on_commit  # called on the loop after a commit that stored messages
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._touched: set[int] = set()
        self._touch_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="queue-writer", daemon=True)
        self._conn_id = None
        self.batches = 0
        self.stored = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    async def store(self, sub: Submission) -> None:
        fut = self.loop.create_future()
        self._queue.put((sub, fut))
        await fut

    def touch(self, login_id: int) -> None:
        """Record a login's last use with the next commit (one commit if the queue is idle)."""
        with self._touch_lock:
            self._touched.add(login_id)
        self._queue.put(())

    def _prepare_connection(self) -> None:
        connection.ensure_connection()
        if connection.vendor == "sqlite" and id(connection.connection) != self._conn_id:
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA synchronous=FULL")
            self._conn_id = id(connection.connection)

    def _reconnect(self) -> None:
        # The next batch opens a fresh connection (and sets its PRAGMA again).
        connection.close()
        self._conn_id = None

    def _resolve(self, results: list[tuple[asyncio.Future, BaseException | None]]) -> None:
        if self.on_commit is not None and any(exc is None for _, exc in results):
            self.on_commit()
        for fut, exc in results:
            if fut.done():  # the client went away while waiting
                continue
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            items = [self._queue.get()]
            while len(items) < MAX_BATCH:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if None in items:
                stopping = True
            batch = [i for i in items if i]
            with self._touch_lock:
                touched, self._touched = self._touched, set()
            if not batch and not touched:
                continue
            results = self._write(batch, touched)
            if results:
                self.loop.call_soon_threadsafe(self._resolve, results)
        connection.close()

    def _write(self, batch, touched):
        subs = [sub for sub, _ in batch]
        try:
            self._prepare_connection()
            write_batch(subs, touched)
            self.batches += 1
            self.stored += len(subs)
            return [(fut, None) for _, fut in batch]
        except (OperationalError, InterfaceError) as exc:
            # The database went away (restarted, connection cut): a line, not a traceback.
            log.error("group commit of %d message(s) and %d last-used time(s) failed "
                      "(%s: %s); retrying one by one", len(subs), len(touched),
                      type(exc).__name__, (str(exc).strip().splitlines() or [""])[0][:200])
            self._reconnect()
        except Exception:
            log.exception("group commit of %d message(s) and %d last-used time(s) failed; "
                          "retrying one by one", len(subs), len(touched))
            self._reconnect()
        results = []
        for sub, fut in batch:
            try:
                self._prepare_connection()
                write_batch([sub], set())
                results.append((fut, None))
            except Exception as exc:
                log.exception("storing message %s failed", sub.queue_id)
                self._reconnect()
                results.append((fut, exc))
        if touched:
            # Once more on their own (a cut connection fails the first try of whatever comes
            # first); dropped if that fails too: last_used is a hint, not worth a loop.
            try:
                self._prepare_connection()
                write_batch([], touched)
            except Exception:
                log.exception("writing last-used times of %d login(s) failed", len(touched))
                self._reconnect()
        return results
