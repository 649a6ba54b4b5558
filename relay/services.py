"""Reads of the queue for the dashboard: which messages a user may see, the message search, a
message's recipients, attempts and timeline, the Outbox, and the HTML as delivered; and the
tracking endpoints' one read, tracked_url().

Every read starts from visible_messages(user): a customer sees their own messages, staff see
everyone's. Writes to the queue are in relay.queue.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Count, Exists, Min, OuterRef, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from events.models import Event
from events.services import for_message as events_for_message
from features import mime
from features.render import envelope_sender
from features.services import context as render_context
from features.services import render_for
from smtpeter_site.db import per_vendor, select_sql

from .models import Attempt, Capture, Message, QueueAudit, Recipient, TrackedLink

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser as User

State = Recipient.State
PENDING = (State.QUEUED, State.DEFERRED)
RECIPIENTS_SHOWN = 100  # on a message page; a search narrows a bigger list
TIMELINE_SHOWN = 1000
# The order of states in a message's summary: what needs attention first.
STATE_ORDER = [State.FAILED, State.BOUNCED, State.DEFERRED, State.HELD, State.QUEUED,
               State.DELIVERED, State.INTAKE]


# -- who sees what ---------------------------------------------------------------------------


def visible_messages(user: User, own: bool = False) -> QuerySet[Message]:
    """The messages ``user`` may see (their own; staff: all, unless ``own``, as the REST API
    asks), without their raw bytes."""
    messages = Message.objects.defer("raw")
    if own or not user.is_staff:
        messages = messages.filter(owner=user)
    return messages


def visible_message(user: User, queue_id: str, own: bool = False) -> Message | None:
    """One message by queue id, or None when it does not exist or is not ``user``'s."""
    return (visible_messages(user, own).select_related("login", "owner", "dsn_of")
            .filter(queue_id=queue_id).first())


def raw_message(user: User, queue_id: str, own: bool = False) -> Message | None:
    """A message ``user`` may download as received: one they may see, or intake mail that
    reports on one of their messages (a bounce, complaint or auto-reply; relay.intake)."""
    message = visible_message(user, queue_id, own)
    if message is None and user.is_authenticated:
        message = (Message.objects.defer("raw")
                   .filter(queue_id=queue_id, kind=Message.Kind.BOUNCE,
                           intake_for__owner=user).first())
    return message


# -- the message search -------------------------------------------------------------------------


@dataclass
class Criteria:
    """What the Messages page searches for; empty fields match everything."""

    recipient: str = ""
    sender: str = ""
    subject: str = ""
    queue_id: str = ""
    login: str = ""
    tag: str = ""
    status: str = ""  # a Recipient.State: messages with at least one recipient in it
    date_from: date | None = None
    date_to: date | None = None
    customer: str = ""  # staff only: the owner's username
    kind: str = "outbound"  # outbound (submissions and DSNs), intake, or all (staff only)


def search(user: User, criteria: Criteria, own: bool = False) -> QuerySet[Message]:
    """The messages ``user`` may see (``own``: only their own) that match ``criteria``,
    newest first."""
    c = criteria
    messages = visible_messages(user, own).select_related("login", "owner")
    if own:
        messages = messages.exclude(kind=Message.Kind.BOUNCE)
    elif c.kind == "intake" and user.is_staff:
        messages = messages.filter(kind=Message.Kind.BOUNCE)
    elif c.kind != "all" or not user.is_staff:
        # Intake (bounces, complaints, replies to VERP addresses) is no customer's sent mail.
        messages = messages.exclude(kind=Message.Kind.BOUNCE)
    if c.recipient:
        messages = messages.filter(Exists(Recipient.objects.filter(
            message=OuterRef("pk"), address__icontains=c.recipient)))
    if c.status:
        messages = messages.filter(Exists(Recipient.objects.filter(
            message=OuterRef("pk"), state=c.status)))
    if c.sender:
        messages = messages.filter(mail_from__icontains=c.sender)
    if c.subject:
        messages = messages.filter(subject__icontains=c.subject)
    if c.queue_id:
        messages = messages.filter(queue_id__istartswith=c.queue_id)
    if c.login:
        messages = messages.filter(login__username__icontains=c.login)
    if c.tag:
        messages = with_tag(messages, c.tag)
    if c.date_from:
        messages = messages.filter(received_at__date__gte=c.date_from)
    if c.date_to:
        messages = messages.filter(received_at__date__lte=c.date_to)
    if c.customer and user.is_staff and not own:
        messages = messages.filter(owner__username__iexact=c.customer)
    return messages.order_by("-received_at", "-id")


def with_tag(rows: QuerySet, tag: str, field: str = "tags") -> QuerySet:
    """``rows`` whose JSON list ``field`` (a message's tags, or "message__tags" from an event)
    holds ``tag``."""
    if connection.features.supports_json_field_contains:
        return rows.filter(**{f"{field}__contains": [tag]})
    # SQLite keeps the JSON text as Django wrote it (json.dumps): a tag is a quoted element.
    return (rows.annotate(tags_text=Cast(field, TextField()))
            .filter(tags_text__contains=json.dumps(tag)))


@dataclass
class Summary:
    """A message's recipients at a glance: the first address, how many, and per state."""

    first: str = ""
    total: int = 0
    states: list[tuple[str, int]] = field(default_factory=list)


def summaries(message_ids: list[int]) -> dict[int, Summary]:
    """Summary per message id, in three queries however many recipients there are."""
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for message_id, state, n in (Recipient.objects.filter(message_id__in=message_ids)
                                 .order_by().values_list("message_id", "state")
                                 .annotate(n=Count("id"))):
        counts[message_id][state] = n
    firsts = (Recipient.objects.filter(message_id__in=message_ids).order_by()
              .values("message_id").annotate(first=Min("id")).values_list("first", flat=True))
    addresses = dict(Recipient.objects.filter(pk__in=list(firsts))
                     .values_list("message_id", "address"))
    found = {}
    for message_id in message_ids:
        by_state = counts.get(message_id, {})
        found[message_id] = Summary(
            addresses.get(message_id, ""), sum(by_state.values()),
            [(state, by_state[state]) for state in STATE_ORDER if state in by_state])
    return found


# -- one message ------------------------------------------------------------------------------


@dataclass
class RecipientView:
    """A recipient with what the page says about it."""

    recipient: Recipient
    sent_from: str | None  # MAIL FROM as sent (or as it will be sent); None for intake
    attempts: list[Attempt] = field(default_factory=list)
    capture_id: int | None = None
    why: str = ""


@dataclass
class TimelineEntry:
    """One line of a message's timeline: exactly one of the object fields is set."""

    time: datetime
    kind: str  # queued, attempt, audit, dsn_message, or an Event type
    recipient: str = ""
    attempt: Attempt | None = None
    event: Event | None = None
    audit: QueueAudit | None = None
    dsn: Message | None = None


@dataclass
class Detail:
    message: Message
    recipients: list[RecipientView]
    recipients_total: int
    recipients_matching: int
    states: list[tuple[str, int]]
    timeline: list[TimelineEntry]
    timeline_cut: bool  # more events than TIMELINE_SHOWN
    dsns: list[Message]
    audits: list[QueueAudit]
    attempt_count: int  # of the recipients shown
    pending: bool  # some recipient is queued, deferred or held: staff actions apply


def detail(message: Message, recipient_search: str = "") -> Detail:
    """Everything the message page shows; recipients (and their attempts and events) are the
    first RECIPIENTS_SHOWN, or those whose address contains ``recipient_search``."""
    all_recipients = message.recipients.order_by("id")
    states = dict(all_recipients.order_by().values_list("state").annotate(n=Count("id")))
    matching = all_recipients
    if recipient_search:
        matching = matching.filter(address__icontains=recipient_search)
    shown = list(matching[:RECIPIENTS_SHOWN])
    ids = [r.pk for r in shown]
    captures = {rid: (cid, sent) for rid, cid, sent in Capture.objects.filter(
        recipient_id__in=ids).values_list("recipient_id", "id", "mail_from")}
    attempts: dict[int, list[Attempt]] = defaultdict(list)
    for a in Attempt.objects.filter(recipient_id__in=ids).order_by("time", "id"):
        attempts[a.recipient_id].append(a)
    audits = list(QueueAudit.objects.filter(message=message).order_by("time", "id"))
    views = []
    for r in shown:
        capture_id, captured_from = captures.get(r.pk, (None, None))
        views.append(RecipientView(
            r, captured_from if capture_id else _sender_for(message, r), attempts[r.pk],
            capture_id, _why(r, audits)))
    dsns = list(message.dsns.defer("raw").order_by("received_at", "id"))
    timeline, cut = _timeline(message, views, audits, dsns)
    return Detail(
        message=message, recipients=views, recipients_total=sum(states.values()),
        recipients_matching=matching.count() if recipient_search else sum(states.values()),
        states=[(s, states[s]) for s in STATE_ORDER if s in states],
        timeline=timeline, timeline_cut=cut, dsns=dsns, audits=audits,
        attempt_count=sum(len(v.attempts) for v in views),
        pending=any(states.get(s) for s in (*PENDING, State.HELD)),
    )


def _sender_for(message: Message, r: Recipient) -> str | None:
    if message.kind == Message.Kind.BOUNCE:
        return None
    return envelope_sender(message.features or {},
                           render_context(message.pk, r.pk, message.mail_from, r.address))


def _why(r: Recipient, audits: list[QueueAudit]) -> str:
    if r.state == State.HELD:
        holds = [a for a in audits if a.action == QueueAudit.Action.HOLD
                 and r.address in a.recipients]
        if holds:
            return f"held by {holds[-1].actor_name} at {holds[-1].time:%Y-%m-%d %H:%M:%S %Z}"
        return "held by staff"
    if r.state == State.QUEUED:
        return "waiting for its first attempt"
    if r.state == State.INTAKE:
        return "intake: mail to the bounce domain, read by the intake, never delivered"
    if r.state == State.BOUNCED:
        return f"delivered ({r.last_response}), then a bounce came back: see the timeline"
    if r.state == State.DELIVERED and r.captured:
        return "captured in the Outbox (DELIVERY_MODE=capture), not sent"
    return r.last_response


def _timeline(message: Message, views: list[RecipientView], audits: list[QueueAudit],
              dsns: list[Message]) -> tuple[list[TimelineEntry], bool]:
    address = {v.recipient.pk: v.recipient.address for v in views}
    entries = [TimelineEntry(message.received_at, "queued")]
    for v in views:
        entries += [TimelineEntry(a.time, "attempt", v.recipient.address, attempt=a)
                    for a in v.attempts]
    events = events_for_message(message.pk, list(address), TIMELINE_SHOWN + 1)
    cut = len(events) > TIMELINE_SHOWN
    # A dsn event and the report it names are one line: the report's, which links to it.
    reports = {d.queue_id for d in dsns}
    entries += [TimelineEntry(e.time, e.type, address.get(e.recipient_id, ""), event=e)
                for e in events[:TIMELINE_SHOWN]
                if not (e.type == "dsn" and e.data.get("queue_id") in reports)]
    entries += [TimelineEntry(a.time, "audit", audit=a) for a in audits]
    entries += [TimelineEntry(d.received_at, "dsn_message", dsn=d) for d in dsns]
    # An attempt and the event it caused share a time: the attempt comes first.
    order = {"queued": 0, "attempt": 1}
    entries.sort(key=lambda e: (e.time, order.get(e.kind, 2)))
    return entries, cut


# -- bounces and complaints, figures per login ---------------------------------------------------

FIGURE_DAYS = 7  # the window of the figures on the Logins page


def bounces(user: User, kind: str = "", bounce_class: str = "", reason: str = "",
            login: str = "") -> QuerySet[Event]:
    """Bounce and complaint events of the messages ``user`` may see, newest first; narrowed
    to a type (bounce or complaint), a class (hard or soft), a reason, a login's username
    (or part of it)."""
    events = (Event.objects.filter(type__in=(Event.Type.BOUNCE, Event.Type.COMPLAINT))
              .select_related("message", "message__login", "message__owner", "recipient")
              .defer("message__raw"))
    if not user.is_staff:
        events = events.filter(message__owner=user)
    if kind:
        events = events.filter(type=kind)
    if bounce_class:
        events = events.filter(type=Event.Type.BOUNCE, data__class=bounce_class)
    if reason:
        events = events.filter(type=Event.Type.BOUNCE, data__reason=reason)
    if login:
        events = events.filter(message__login__username__icontains=login)
    return events.order_by("-time", "-id")


@dataclass
class Figures:
    """One login's mail over the last FIGURE_DAYS days, counted per recipient."""

    sent: int = 0
    delivered: int = 0
    hard: int = 0
    soft: int = 0
    complaints: int = 0


def login_figures(login_ids: list[int], now: datetime | None = None) -> dict[int, Figures]:
    """Figures per login id (every id given has an entry), in two grouped queries: recipients
    of the login's messages received in the window, and their bounce/complaint events."""
    from django.utils import timezone

    since = (now or timezone.now()) - timedelta(days=FIGURE_DAYS)
    figures = {pk: Figures() for pk in login_ids}
    rows = (Recipient.objects.filter(message__login_id__in=login_ids,
                                     message__received_at__gte=since,
                                     message__kind=Message.Kind.SUBMISSION)
            .values_list("message__login_id", "state").annotate(n=Count("id")))
    for login_id, state, n in rows:
        f = figures[login_id]
        f.sent += n
        # A bounced recipient was delivered first.
        if state in (State.DELIVERED, State.BOUNCED):
            f.delivered += n
    events = (Event.objects.filter(type__in=(Event.Type.BOUNCE, Event.Type.COMPLAINT),
                                   message__login_id__in=login_ids, time__gte=since)
              .values_list("message__login_id", "type", "data__class").annotate(n=Count("id")))
    for login_id, type_, klass, n in events:
        f = figures[login_id]
        if type_ == Event.Type.COMPLAINT:
            f.complaints += n
        elif klass == "hard":
            f.hard += n
        elif klass == "soft":
            f.soft += n
    return figures


# -- the message as delivered -----------------------------------------------------------------


@dataclass
class Delivered:
    """The bytes a recipient got (or will get), and where they come from."""

    recipient: Recipient | None
    source: str  # captured, rendered, or received (intake: not delivered)
    data: bytes
    warnings: list[str] = field(default_factory=list)


@dataclass
class Body:
    html: str | None = None
    text: str | None = None


def default_recipient(message: Message) -> Recipient | None:
    """Whose copy the page shows unless asked: the first captured recipient, else the first."""
    captured = message.recipients.filter(capture__isnull=False).order_by("id").first()
    return captured or message.recipients.order_by("id").first()


def as_delivered(message: Message, recipient: Recipient | None) -> Delivered:
    """The captured bytes of a captured recipient; otherwise the message rendered as delivery
    renders it, except that its tracking tokens name no recipient (recipient id 0): a click
    in the dashboard is not counted as the recipient's (it leads to "not found")."""
    if recipient is not None:
        capture = Capture.objects.filter(recipient=recipient).values_list("data").first()
        if capture is not None:
            return Delivered(recipient, "captured", bytes(capture[0]))
    raw = bytes(message.raw)
    if message.kind == Message.Kind.BOUNCE:
        return Delivered(recipient, "received", raw)
    stand_in = Recipient(pk=0, address=recipient.address if recipient else "")
    rendered = render_for(message, stand_in)
    return Delivered(recipient, "rendered", rendered.message, list(rendered.warnings))


def body_of(data: bytes) -> Body:
    """The first HTML and the first plain-text part (not attachments) of a message, decoded."""
    body = Body()
    leaves, _ = mime.leaves(data)
    for leaf in leaves:
        if leaf.attachment:
            continue
        if leaf.content_type == "text/html" and body.html is None:
            body.html = _decoded(data, leaf)
        elif leaf.content_type == "text/plain" and body.text is None:
            body.text = _decoded(data, leaf)
    return body


def _decoded(data: bytes, leaf: mime.Leaf) -> str:
    part = data[leaf.body_start:leaf.end]
    try:
        part = mime.decode_body(part, leaf.cte)
    except mime.MimeError:
        pass  # shown as it is on the wire
    try:
        codec = mime.codec_name(leaf.charset)
    except mime.MimeError:
        codec = "utf-8"
    return part.decode(codec, "replace")


# -- the Outbox ---------------------------------------------------------------------------------


def outbox(user: User) -> QuerySet[Capture]:
    """The captured copies of the messages ``user`` may see, newest first, without bytes."""
    captures = (Capture.objects.select_related("recipient", "message")
                .defer("data", "message__raw"))
    if not user.is_staff:
        captures = captures.filter(message__owner=user)
    return captures.order_by("-time", "-id")


def action_allowed(message: Message) -> dict[str, bool]:
    """Which staff actions change something on this message (the others have nothing to do)."""
    states = set(message.recipients.values_list("state", flat=True).distinct())
    pending = bool(states & set(PENDING))
    return {"retry": pending, "hold": pending, "release": State.HELD in states,
            "delete": pending or State.HELD in states}


# -- the tracking endpoints' lookup -----------------------------------------------------------


def raw_and_features(message_id: int) -> tuple[bytes, dict] | None:
    """A stored message's bytes and feature set, or None: the click endpoint's fallback for
    mail whose link lists were never stored."""
    return Message.objects.filter(pk=message_id).values_list("raw", "features").first()


def recipient_exists(message_id: int, recipient_id: int) -> bool:
    """Whether the recipient is one of the message's (a token names both). On every click:
    a prepared statement, like tracked_url(), not an ORM query compiled each time."""
    conn = connections[DEFAULT_DB_ALIAS]
    with conn.cursor() as cursor:
        cursor.execute(_recipient_sql(conn), [recipient_id, message_id])
        return cursor.fetchone() is not None


@per_vendor
def _recipient_sql(conn) -> str:
    qn = conn.ops.quote_name
    meta = Recipient._meta
    return (f"SELECT 1 FROM {qn(meta.db_table)} WHERE {qn(meta.pk.column)} = %s"
            f" AND {qn(meta.get_field('message').column)} = %s")


def tracked_url(message_id: int, kind: str, position: int) -> tuple[bool, str | None]:
    """(stored, url): whether the message's link lists are stored (relay.queue.store_links),
    and the URL at ``position`` of ``kind`` (TrackedLink.Kind: "c" or "o"; open 0 is the
    pixel, "") or None when there is none.

    Two point lookups in the unique index, however many links the message has: a click must
    not read a message's 8 MB of URLs to find one.
    """
    # The wrapper itself, not the django.db.connection proxy (an asgiref lookup per use).
    conn = connections[DEFAULT_DB_ALIAS]
    with conn.cursor() as cursor:
        cursor.execute(_tracked_sql(conn),
                       [message_id, kind, position, message_id, TrackedLink.Kind.OPEN])
        rows = cursor.fetchall()
    url = next((row[1] for row in rows if row[0] == 1), None)
    return bool(rows), url


@per_vendor
def _tracked_sql(conn) -> str:
    qn = conn.ops.quote_name
    table = qn(TrackedLink._meta.db_table)
    message, kind, position, url = (qn(TrackedLink._meta.get_field(f).column)
                                    for f in ("message", "kind", "position", "url"))
    # The second row (the pixel's, always there once stored) says the lists are stored.
    return (
        f"SELECT 1, {url} FROM {table} WHERE {message} = %s AND {kind} = %s"
        f" AND {position} = %s"
        f" UNION ALL SELECT 0, NULL FROM {table} WHERE {message} = %s AND {kind} = %s"
        f" AND {position} = 0"
    )


# -- the queue at a glance (the staff dashboard and relay.metrics) ----------------------------

GLANCE_STATES = (State.QUEUED, State.DEFERRED, State.HELD, State.INTAKE)


def queue_depth() -> dict[str, int]:
    """Recipients in each pending state (an index-only count on rcpt_due), all owners."""
    rows = (Recipient.objects.filter(state__in=GLANCE_STATES).values_list("state")
            .annotate(n=Count("id")).order_by())
    return {state: n for state, n in rows}


def oldest_pending() -> datetime | None:
    """When the oldest message with a queued or deferred recipient arrived (ids grow with
    arrival, so the lowest message id is the oldest: no join over the whole queue)."""
    first = (Recipient.objects.filter(state__in=PENDING)
             .aggregate(first=Min("message_id"))["first"])
    if first is None:
        return None
    return Message.objects.filter(pk=first).values_list("received_at", flat=True).first()


@dataclass
class Glance:
    depth: dict[str, int]
    oldest: datetime | None
    delivered_last_minute: int
    delivered_per_minute_15: float  # the mean of the last 15 minutes
    deferrals: list[dict]  # top reasons of the last hour: host, code, enhanced, text, count


def glance(now: datetime | None = None, top: int = 10) -> Glance:
    """The staff dashboard's queue page: every query bounded by an index (state, Attempt.time)."""
    now = now or timezone.now()
    recent = Attempt.objects.filter(time__gte=now - timedelta(minutes=15),
                                    outcome=Attempt.Outcome.DELIVERED)
    counts = recent.aggregate(
        minute=Count("id", filter=Q(time__gte=now - timedelta(minutes=1))),
        fifteen=Count("id"))
    deferrals = list(
        Attempt.objects.filter(time__gte=now - timedelta(hours=1),
                               outcome=Attempt.Outcome.DEFERRED)
        .values("host", "code", "enhanced").annotate(count=Count("id"), text=Min("text"))
        .order_by("-count", "host")[:top])
    return Glance(queue_depth(), oldest_pending(), counts["minute"],
                  round(counts["fifteen"] / 15, 1), deferrals)
# -- for the statistics (events.stats) --------------------------------------------------------


def message_owners(message_ids: list[int], chunk: int = 500
                   ) -> dict[int, tuple[int, int | None, list]]:
    """(owner id, login id, tags) of each of the messages that has an owner: prepared
    SELECTs of ``chunk`` ids, no model instances (a statistics rollup reads thousands)."""
    found: dict[int, tuple[int, int | None, list]] = {}
    conn = connections[DEFAULT_DB_ALIAS]
    sql = select_sql(conn, Message, ["id", "owner", "login", "tags"], "id")
    with conn.cursor() as cursor:
        for n in range(0, len(message_ids), chunk):
            ids = message_ids[n:n + chunk]
            cursor.execute(f"{sql} IN ({', '.join(['%s'] * len(ids))})", ids)
            for pk, owner, login, tags in cursor.fetchall():
                if owner is None:
                    continue
                if isinstance(tags, str):  # SQLite hands back the JSON text
                    tags = json.loads(tags)
                found[pk] = (owner, login, tags if isinstance(tags, list) else [])
    return found
