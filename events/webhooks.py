"""Webhooks: customers' endpoints, the outbox that events.services.record() fills, and what the
sender (events.sender, the webhooks role of runsmtp) reads and writes.

- Endpoints: create (the signing secret is returned once), change, enable/disable, delete, send
  a test event; each change writes a WebhookAudit entry in its own transaction. Views and the
  REST API call these, never the models directly.
- The outbox: write_outbox() runs inside the recording transaction, one WebhookDelivery per
  event and subscribed enabled endpoint, from a per-process cache of the enabled endpoints.
- The sender's side: claim() leases due rows (SKIP LOCKED on PostgreSQL) with their signed
  payloads ready, record_outcomes() stores what the POSTs came to; a row is done only after a
  2xx, so a crash between the POST and its record sends it again with the same webhook-id.
- The SSRF rules: url_problem() when a URL is saved, address_allowed() for every address the
  sender is about to connect to.

Secrets: "whsec_" + base64 of 32 random bytes (the Standard Webhooks form), stored encrypted
with Fernet under a key derived from SECRET_KEY: the sender must read it back to sign, so it
cannot be hashed; a database dump alone does not reveal it.
"""
from __future__ import annotations

import base64
import ipaddress
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone

from smtpeter_site.db import insert_sql, per_vendor
from smtpeter_site.keys import key_for

from .models import Event, WebhookAttempt, WebhookAudit, WebhookDelivery, WebhookEndpoint

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from .services import NewEvent

log = logging.getLogger("events.webhooks")

State = WebhookDelivery.State
EVENT_TYPES = [t for t in Event.Type.values]
EXCERPT = 1000  # characters of a response body kept in the delivery log
LOG_ROWS = 50  # attempts shown on an endpoint's page


# -- secrets -------------------------------------------------------------------------------


def _fernet() -> Fernet:
    return Fernet(base64.urlsafe_b64encode(key_for("webhook-secret")))


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def encrypt_secret(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode("ascii")


def decrypt_secret(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()


# -- the SSRF rules ------------------------------------------------------------------------


def address_allowed(address: str) -> bool:
    """Whether the sender may connect to this IP address: a public one, or any with
    WEBHOOK_ALLOW_PRIVATE."""
    if settings.WEBHOOK_ALLOW_PRIVATE:
        return True
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast
                or ip.is_reserved or ip.is_unspecified or not ip.is_global)


def url_problem(url: str, resolve: bool = True) -> str | None:
    """Why this URL cannot be an endpoint, or None. Names that do not resolve now are
    accepted (they may later); every address is checked again when the sender connects."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    schemes = ("https", "http") if settings.WEBHOOK_ALLOW_HTTP else ("https",)
    if parts.scheme not in schemes:
        return ("the URL must start with https://" if not settings.WEBHOOK_ALLOW_HTTP
                else "the URL must start with https:// or http://")
    if not parts.hostname:
        return "the URL has no host"
    if parts.username is not None or parts.password is not None:
        return "the URL may not hold a user name or password"
    host = parts.hostname
    try:
        ipaddress.ip_address(host)
        literal = True
    except ValueError:
        literal = False
    if literal or resolve:
        try:
            infos = ([(None, None, None, None, (host,))] if literal else
                     socket.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM))
        except (socket.gaierror, UnicodeError):
            return None
        refused = sorted({i[4][0] for i in infos if not address_allowed(i[4][0])})
        if refused:
            return (f"{host} is a loopback, private, link-local or reserved address "
                    f"({', '.join(refused)}); such endpoints are refused")
    return None


# -- endpoints (the dashboard and the API call these) --------------------------------------


def endpoints_of(owner: AbstractBaseUser) -> Any:
    return WebhookEndpoint.objects.filter(owner=owner).order_by("id")


def endpoint_of(owner: AbstractBaseUser, pk: int) -> WebhookEndpoint | None:
    """The owner's endpoint ``pk``, or None (also for another owner's: their 404)."""
    return WebhookEndpoint.objects.filter(owner=owner, pk=pk).first()


def _clean_types(event_types: Iterable[str]) -> list[str]:
    types = sorted(set(event_types))
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown or not types:
        raise ValueError(f"event types must be some of {', '.join(EVENT_TYPES)}")
    return types


def _audit(action: str, endpoint: WebhookEndpoint, actor: AbstractBaseUser | None,
           ip: str | None, **details: Any) -> None:
    # A change made through the REST API names its key, as login changes do.
    from credentials.services import actor_label, key_details

    WebhookAudit.objects.create(
        action=action, owner_id=endpoint.owner_id, actor=actor,
        actor_name=actor_label(actor) if actor is not None else "",
        endpoint=endpoint if endpoint.pk else None, url=endpoint.url, ip=ip,
        details={**details, **key_details()})


def create_endpoint(owner: AbstractBaseUser, url: str, event_types: Iterable[str],
                    description: str = "", *, actor: AbstractBaseUser | None = None,
                    ip: str | None = None) -> tuple[WebhookEndpoint, str]:
    """A new enabled endpoint and its signing secret (shown once: only the encrypted form is
    kept). ValueError for a URL or event types that cannot be."""
    problem = url_problem(url)
    if problem:
        raise ValueError(problem)
    secret = new_secret()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(
            owner=owner, url=url, description=description[:200],
            event_types=_clean_types(event_types), secret_encrypted=encrypt_secret(secret))
        _audit(WebhookAudit.Action.CREATED, endpoint, actor, ip,
               event_types=endpoint.event_types)
    forget_endpoints()
    return endpoint, secret


def update_endpoint(endpoint: WebhookEndpoint, *, url: str, event_types: Iterable[str],
                    description: str = "", actor: AbstractBaseUser | None = None,
                    ip: str | None = None) -> WebhookEndpoint:
    problem = url_problem(url) if url != endpoint.url else None
    if problem:
        raise ValueError(problem)
    before = {"url": endpoint.url, "event_types": endpoint.event_types,
              "description": endpoint.description}
    endpoint.url, endpoint.event_types = url, _clean_types(event_types)
    endpoint.description = description[:200]
    after = {"url": endpoint.url, "event_types": endpoint.event_types,
             "description": endpoint.description}
    if before == after:
        return endpoint
    with transaction.atomic():
        endpoint.save(update_fields=["url", "event_types", "description"])
        _audit(WebhookAudit.Action.CHANGED, endpoint, actor, ip, before=before, after=after)
    forget_endpoints()
    return endpoint


def set_enabled(endpoint: WebhookEndpoint, enabled: bool, *, reason: str = "",
                actor: AbstractBaseUser | None = None, ip: str | None = None) -> None:
    """Enable (its pending rows are due at once, the failure clock starts again) or disable
    (with the reason the customer sees)."""
    now = timezone.now()
    with transaction.atomic():
        if enabled:
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
                enabled=True, disabled_reason="", disabled_at=None, failing_since=None)
            WebhookDelivery.objects.filter(endpoint=endpoint, state=State.PENDING).update(
                next_attempt_at=now)
        else:
            reason = reason or "disabled by " + (actor.get_username() if actor else "the sender")
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
                enabled=False, disabled_reason=reason[:500], disabled_at=now)
        _audit(WebhookAudit.Action.ENABLED if enabled else WebhookAudit.Action.DISABLED,
               endpoint, actor, ip, **({} if enabled else {"reason": reason[:500]}))
    endpoint.refresh_from_db()
    forget_endpoints()


def delete_endpoint(endpoint: WebhookEndpoint, *, actor: AbstractBaseUser | None = None,
                    ip: str | None = None) -> None:
    """Delete the endpoint with its outbox rows and log (the audit entry keeps its URL)."""
    with transaction.atomic():
        _audit(WebhookAudit.Action.DELETED, endpoint, actor, ip)
        endpoint.delete()
    forget_endpoints()


def send_test(endpoint: WebhookEndpoint, *, actor: AbstractBaseUser | None = None,
              ip: str | None = None) -> WebhookDelivery:
    """Queue a `test` event for this endpoint (whatever its event types; also when disabled
    it waits until enabled)."""
    now = timezone.now()
    with transaction.atomic():
        row = WebhookDelivery.objects.create(endpoint=endpoint, payload={
            "type": "test", "timestamp": _rfc3339(now),
            "data": {"id": None, "type": "test", "time": _rfc3339(now),
                     "message_id": None, "recipient_id": None, "recipient": None, "tags": [],
                     "text": "A test event from smtpeter."}})
        _audit(WebhookAudit.Action.TESTED, endpoint, actor, ip, delivery=row.pk)
        transaction.on_commit(_notify)
    return row


def delivery_log(endpoint: WebhookEndpoint, limit: int = LOG_ROWS) -> list[WebhookAttempt]:
    return list(attempts_of(endpoint).order_by("-time", "-id")[:limit])


def attempts_of(endpoint: WebhookEndpoint) -> Any:
    """Every logged POST to the endpoint with its outbox row and event (the REST API pages
    through these; the dashboard shows the last LOG_ROWS)."""
    return (WebhookAttempt.objects.filter(endpoint=endpoint)
            .select_related("delivery", "delivery__event"))


def attempt_event_type(attempt: WebhookAttempt) -> str:
    """The event type a logged POST carried ("test" for a test event)."""
    row = attempt.delivery
    return row.event.type if row.event is not None else (row.payload or {}).get("type", "")


def pending_count(endpoint: WebhookEndpoint) -> int:
    return WebhookDelivery.objects.filter(endpoint=endpoint, state=State.PENDING).count()


def backlog() -> int:
    """Webhook POSTs not yet delivered, every endpoint (the metrics gauge; the state index)."""
    return WebhookDelivery.objects.filter(state=State.PENDING).count()


# -- the outbox, written by record() -------------------------------------------------------

_cache_lock = threading.Lock()
_cache: dict[str, Any] = {"until": 0.0, "by_owner": {}}
_owners: dict[int, int | None] = {}  # message id -> owner id (never changes)
_OWNERS_MAX = 20000
# Set by the sender of this process: called after a commit that wrote outbox rows.
listener: Any = None


def forget_endpoints() -> None:
    """Drop this process's endpoint cache (after a change made here)."""
    with _cache_lock:
        _cache["until"] = 0.0


def forget_caches() -> None:
    """Drop the endpoint cache and the message owners too (tests: rolled-back ids return)."""
    forget_endpoints()
    _owners.clear()


def _enabled_endpoints() -> dict[int, tuple[tuple[int, frozenset[str]], ...]]:
    now = time.monotonic()
    if now < _cache["until"]:
        return _cache["by_owner"]
    by_owner: dict[int, list] = {}
    for pk, owner_id, types in (WebhookEndpoint.objects.filter(enabled=True)
                                .values_list("id", "owner_id", "event_types")):
        by_owner.setdefault(owner_id, []).append((pk, frozenset(types or ())))
    frozen = {k: tuple(v) for k, v in by_owner.items()}
    with _cache_lock:
        _cache["by_owner"] = frozen
        _cache["until"] = now + settings.WEBHOOK_CACHE_SECONDS
    return frozen


def _owners_of(message_ids: set[int]) -> dict[int, int | None]:
    missing = [m for m in message_ids if m not in _owners]
    if missing:
        from relay.models import Message

        found = dict(Message.objects.filter(pk__in=missing).values_list("id", "owner_id"))
        # Kept only once committed: a message of a transaction that is rolled back could
        # lend its id (SQLite) to another customer's message.
        transaction.on_commit(lambda: _remember(found))
        return {m: found[m] if m in found else _owners.get(m) for m in message_ids}
    return {m: _owners.get(m) for m in message_ids}


def _remember(found: dict[int, int | None]) -> None:
    if len(_owners) > _OWNERS_MAX:
        _owners.clear()
    _owners.update(found)


def write_outbox(ids: list[int], events: list[NewEvent]) -> int:
    """Inside the recording transaction: one outbox row per event and enabled endpoint of the
    message's owner subscribed to its type. While no customer has an enabled endpoint, one
    query per WEBHOOK_CACHE_SECONDS; the message's owner is looked up once per message and
    process."""
    by_owner = _enabled_endpoints()
    if not by_owner:
        return 0
    owners = _owners_of({e.message_id for e in events if e.message_id is not None})
    rows = []
    for pk, e in zip(ids, events, strict=True):
        for endpoint_id, types in by_owner.get(owners.get(e.message_id), ()):
            if e.type in types:
                rows.append((endpoint_id, pk))
    if rows:
        conn = connections[DEFAULT_DB_ALIAS]
        sql, fields = _insert_outbox(conn)
        now = fields["created"].get_db_prep_save(timezone.now(), conn)
        # A prepared INSERT: the ORM's bulk_create cost ~300 µs per row here, about as much
        # as the event's own INSERT and commit (bench/README.md, "Webhooks").
        with conn.cursor() as cursor:
            cursor.executemany(sql, [(ep, ev, State.PENDING, now, 0, now, "", "", ep)
                                     for ep, ev in rows])
        transaction.on_commit(_notify)
    return len(rows)


@per_vendor
def _insert_outbox(conn) -> tuple[str, dict]:
    """INSERT … SELECT: a row only while its endpoint exists and is enabled. The cache may be
    older than a deletion in another process; a plain INSERT would then break the event's
    own transaction on the foreign key."""
    names = ["endpoint", "event", "state", "created", "attempts", "next_attempt_at",
             "leased_by", "last_error"]
    qn = conn.ops.quote_name
    meta = WebhookEndpoint._meta
    values = insert_sql(conn, WebhookDelivery, names)
    head = values[:values.index(" VALUES ")]
    sql = (f"{head} SELECT {', '.join(['%s'] * len(names))} FROM {qn(meta.db_table)} "
           f"WHERE {qn(meta.pk.column)} = %s AND {qn(meta.get_field('enabled').column)}")
    return sql, {n: WebhookDelivery._meta.get_field(n) for n in names}


def _notify() -> None:
    if listener is not None:
        listener()


# -- payloads ------------------------------------------------------------------------------


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _type_fields(type_: str, data: dict, flags: list) -> dict:
    """The fields of each event type beyond the common ones (docs/webhooks.md)."""
    if type_ == "failure":
        return {"status": data.get("enhanced", ""), "code": data.get("code"),
                "class": data.get("class", ""), "reason": data.get("reason", ""),
                "response": data.get("text", ""), "expired": bool(data.get("expired"))}
    if type_ == "bounce":
        return {"status": data.get("status", ""), "class": data.get("class", ""),
                "reason": data.get("reason", ""), "diagnostic": data.get("diagnostic", ""),
                "remote_mta": data.get("remote_mta", "")}
    if type_ in ("delivery", "deferral"):
        return {"status": data.get("enhanced", ""), "code": data.get("code"),
                "response": data.get("text", ""), "host": data.get("host", "")}
    if type_ == "click":
        return {"url": data.get("url", ""), "machine": bool(flags), "flags": list(flags)}
    if type_ == "open":
        return {"machine": bool(flags), "flags": list(flags)}
    if type_ == "complaint":
        return {"feedback_type": data.get("feedback_type", "")}
    if type_ == "response":
        return {"subject": data.get("subject", ""), "from": data.get("from", "")}
    return {k: v for k, v in data.items() if k not in ("ip", "user_agent")}


def event_payload(event: Event) -> dict:
    """The JSON body for one event: Standard Webhooks' {type, timestamp, data}."""
    message, recipient = event.message, event.recipient
    data = {
        "id": event.pk, "type": event.type, "time": _rfc3339(event.time),
        "message_id": message.queue_id if message else None,
        "recipient_id": event.recipient_id,
        "recipient": recipient.address if recipient else None,
        "tags": list(message.tags or []) if message else [],
        **_type_fields(event.type, event.data or {}, event.flags or []),
    }
    return {"type": event.type, "timestamp": data["time"], "data": data}


# -- the sender's side (called on its database thread) -------------------------------------


@dataclass(frozen=True)
class Job:
    """One claimed outbox row, ready to POST."""

    delivery_id: int
    endpoint_id: int
    url: str
    secret: str
    webhook_id: str
    body: bytes


@dataclass
class Outcome:
    """What one POST came to."""

    delivery_id: int
    endpoint_id: int
    status: int | None  # None: no HTTP answer (timeout, refused, connection error)
    error: str = ""
    duration_ms: int = 0
    excerpt: str = ""
    retry_after: float | None = None  # seconds the receiver asked us to wait

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def webhook_id(delivery_id: int) -> str:
    """The webhook-id header: the same on every retry of one row (receivers dedupe on it)."""
    return f"msg_{delivery_id}"


def _due(now: datetime, limit: int, saturated: Iterable[int]) -> list[tuple[int, int]]:
    qs = (WebhookDelivery.objects
          .filter(state=State.PENDING, next_attempt_at__lte=now, endpoint__enabled=True)
          .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
          .exclude(endpoint_id__in=list(saturated))
          .order_by("next_attempt_at"))
    if connection.features.has_select_for_update_skip_locked:
        qs = qs.select_for_update(skip_locked=True, of=("self",))
    return list(qs.values_list("id", "endpoint_id")[:limit])


def claim(worker_id: str, limit: int, room: dict[int, int] | None = None,
          saturated: Iterable[int] = (), now: datetime | None = None) -> list[Job]:
    """Lease up to ``limit`` due rows of enabled endpoints, at most room[endpoint] (else
    WEBHOOK_ENDPOINT_CONCURRENCY) per endpoint, skipping ``saturated`` endpoints; return
    them with their bodies built and secrets decrypted."""
    now = now or timezone.now()
    room = dict(room or {})
    per_endpoint = settings.WEBHOOK_ENDPOINT_CONCURRENCY
    with transaction.atomic():
        kept = []
        for pk, endpoint_id in _due(now, limit, saturated):
            left = room.get(endpoint_id, per_endpoint)
            if left > 0:
                room[endpoint_id] = left - 1
                kept.append(pk)
        if not kept:
            return []
        WebhookDelivery.objects.filter(pk__in=kept).update(
            lease_until=now + timedelta(seconds=settings.WEBHOOK_LEASE), leased_by=worker_id)
    rows = (WebhookDelivery.objects.filter(pk__in=kept)
            .select_related("endpoint", "event", "event__message", "event__recipient")
            .defer("event__message__raw"))
    jobs, unreadable = [], {}
    for row in rows:
        try:
            secret = decrypt_secret(row.endpoint.secret_encrypted)
        except InvalidToken:
            unreadable.setdefault(row.endpoint_id, []).append(row.pk)
            continue
        payload = row.payload if row.event is None else event_payload(row.event)
        jobs.append(Job(row.pk, row.endpoint_id, row.endpoint.url, secret, webhook_id(row.pk),
                        json.dumps(payload, separators=(",", ":")).encode()))
    if unreadable:
        # Encrypted under another SECRET_KEY: nothing can be signed for these endpoints. One
        # such endpoint must not stop the others; its rows wait, the customer sees why.
        with transaction.atomic():
            for endpoint_id, ids in unreadable.items():
                _disable(endpoint_id, "its signing secret cannot be read (SECRET_KEY has "
                                      "changed?): delete the endpoint and add it again", now)
                unclaim(worker_id, ids)
    return jobs


def retry_delay(attempts: int) -> float:
    """Seconds before the retry after ``attempts`` failed POSTs: WEBHOOK_RETRY_FIRST doubling,
    at most WEBHOOK_RETRY_MAX."""
    return min(settings.WEBHOOK_RETRY_FIRST * 2 ** max(attempts - 1, 0),
               settings.WEBHOOK_RETRY_MAX)


def next_attempt(attempts: int, created: datetime, now: datetime,
                 retry_after: float | None = None) -> datetime | None:
    """When to try again after ``attempts`` failures, or None: the window is over. A
    Retry-After is honoured up to the window's end; the last try is at the window's end."""
    end = created + timedelta(seconds=settings.WEBHOOK_RETRY_WINDOW)
    if now >= end:
        return None
    wait = max(retry_delay(attempts), retry_after or 0)
    return min(now + timedelta(seconds=wait), end)


def _disable(endpoint_id: int, reason: str, now: datetime) -> None:
    changed = WebhookEndpoint.objects.filter(pk=endpoint_id, enabled=True).update(
        enabled=False, disabled_reason=reason[:500], disabled_at=now)
    if changed:
        endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)
        _audit(WebhookAudit.Action.DISABLED, endpoint, None, None, reason=reason[:500])
        log.warning("webhook endpoint %s disabled: %s", endpoint_id, reason)
        transaction.on_commit(forget_endpoints)


def _what(o: Outcome) -> str:
    return f"HTTP {o.status}" if o.status is not None else (o.error or "no answer")


def record_outcomes(worker_id: str, outcomes: list[Outcome],
                    now: datetime | None = None) -> None:
    """Store a batch of POST outcomes in one transaction: the log rows, done rows (2xx),
    retries on the schedule, given-up rows, and disabled endpoints (410 at once; failing for
    the whole WEBHOOK_RETRY_WINDOW)."""
    if not outcomes:
        return
    now = now or timezone.now()
    window = timedelta(seconds=settings.WEBHOOK_RETRY_WINDOW)
    with transaction.atomic():
        WebhookAttempt.objects.bulk_create([
            WebhookAttempt(endpoint_id=o.endpoint_id, delivery_id=o.delivery_id, time=now,
                           status=o.status, error=o.error[:500], duration_ms=o.duration_ms,
                           response_excerpt=o.excerpt[:EXCERPT]) for o in outcomes])
        ok = [o for o in outcomes if o.ok]
        # The answer's time and excerpt from the log rows just written: one statement per
        # status, not one per row. Done whoever holds the lease now: the receiver has it.
        last = WebhookAttempt.objects.filter(delivery=OuterRef("pk")).order_by("-id")
        for status in {o.status for o in ok}:
            WebhookDelivery.objects.filter(
                pk__in=[o.delivery_id for o in ok if o.status == status]).update(
                state=State.DELIVERED, done_at=now, attempts=F("attempts") + 1,
                last_status=status, last_error="", lease_until=None, leased_by="",
                last_duration_ms=Subquery(last.values("duration_ms")[:1]),
                last_response=Subquery(last.values("response_excerpt")[:1]))
        if ok:
            WebhookEndpoint.objects.filter(pk__in={o.endpoint_id for o in ok},
                                           failing_since__isnull=False).update(
                failing_since=None)
        failed = [o for o in outcomes if not o.ok]
        if not failed:
            return
        rows = {r.pk: r for r in WebhookDelivery.objects.filter(
            pk__in=[o.delivery_id for o in failed], leased_by=worker_id)}
        for o in failed:
            row = rows.get(o.delivery_id)
            if row is None:
                continue  # the lease was lost: its holder writes the outcome
            attempts = row.attempts + 1
            fields = {"attempts": attempts, "last_status": o.status, "last_error": o.error[:500],
                      "last_duration_ms": o.duration_ms, "last_response": o.excerpt[:EXCERPT],
                      "lease_until": None, "leased_by": ""}
            if o.status == 410:
                fields["next_attempt_at"] = now  # when re-enabled
                _disable(o.endpoint_id, f"the endpoint answered 410 Gone on "
                                        f"{_rfc3339(now)}", now)
            else:
                due = next_attempt(attempts, row.created, now, o.retry_after)
                if due is None:
                    fields.update(state=State.FAILED, done_at=now)
                    log.warning("webhook delivery %s to endpoint %s given up after %d "
                                "attempts: %s", row.pk, o.endpoint_id, attempts, _what(o))
                else:
                    fields["next_attempt_at"] = due
            WebhookDelivery.objects.filter(pk=row.pk).update(**fields)
        for endpoint_id in {o.endpoint_id for o in failed if o.status != 410}:
            WebhookEndpoint.objects.filter(pk=endpoint_id, failing_since__isnull=True).update(
                failing_since=now)
            since = (WebhookEndpoint.objects.filter(pk=endpoint_id)
                     .values_list("failing_since", flat=True).first())
            if since is not None and now - since >= window:
                last = next(o for o in reversed(failed) if o.endpoint_id == endpoint_id)
                _disable(endpoint_id, f"every POST failed from {_rfc3339(since)} to "
                                      f"{_rfc3339(now)}; the last: {_what(last)}", now)


def unclaim(worker_id: str, delivery_ids: list[int]) -> int:
    """Give leases back unworked (a stopping sender)."""
    return WebhookDelivery.objects.filter(pk__in=delivery_ids, leased_by=worker_id).update(
        lease_until=None, leased_by="")
