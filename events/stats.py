"""Statistics of a customer's mail per UTC day: sent, delivered, bounced (hard/soft),
complaints, opened and clicked; unique and total opens and clicks; the most clicked links.
Filtered by owner, login, tag and date range; machine-flagged opens and clicks left out unless
asked. Plain functions returning plain data (dicts and lists), for the dashboard's Statistics
page and the REST API alike (docs/statistics.md).

Why a rollup: a page over a million events must not read them all. A closed day (ended more
than GRACE ago: no event can still be written into it, since events are timestamped when they
are recorded) is counted once, for every owner, into DailyStat/DailyLink rows, and marked in
RolledDay; reading a range then reads those rows (a few per day, login and tag) through the
index (owner, tag, day). The days not closed yet (today) are counted from the events at read
time, through the index on Event.time (and that count reused for STATS_LIVE_CACHE_SECONDS
per process). Days missing from the rollup are rolled up when a page
first asks for them, or ahead of time by `manage.py rollupstats`. events.services.record() is
not involved: nothing is written per event.

What counts (per recipient-event, the same as the logins page):
- sent: recipients of submitted messages (not DSNs) received that day;
- delivered: `delivery` events; hard/soft: `failure` (our own delivery) and `bounce` (came
  back) events by their class (a missing class counts as hard);
- complaints: `complaint` events; opened/clicked: `open`/`click` events;
- unique opened/clicked: recipients whose first open (click) of the message was that day,
  so that uniques add up exactly over any range;
- machine-flagged (Event.flags not empty: scanners, prefetch) opens and clicks are counted
  apart; machine=True adds them to totals, uniques and links.
"""
from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from time import monotonic

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction
from django.db.models import Count
from django.utils import timezone

from smtpeter_site.db import per_vendor

from .models import DailyLink, DailyStat, Event, RolledDay

METRICS = ("sent", "delivered", "hard", "soft", "complaints", "opened", "clicked")
# A day is closed (rolled up, never counted again) this long after its end: an event written
# by a transaction that began before midnight commits well within it.
GRACE = timedelta(hours=1)
MAX_DAYS = 400  # the longest range one call reads
TAG_LENGTH = 255
_CHUNK = 500
_COUNTED = (Event.Type.DELIVERY, Event.Type.FAILURE, Event.Type.BOUNCE, Event.Type.COMPLAINT,
            Event.Type.OPEN, Event.Type.CLICK)
_TRACKED = {Event.Type.OPEN: "opened", Event.Type.CLICK: "clicked"}

Key = tuple[int, int, str]  # owner id, login id (0: none), tag ("": all)


@dataclass(frozen=True)
class Query:
    """What to count: one owner's mail (or every owner's: owner_id None, for staff) from
    ``start`` to ``end`` (UTC days, both included), of one login and/or one tag."""

    owner_id: int | None
    start: date
    end: date
    login_id: int | None = None
    tag: str = ""
    machine: bool = False

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("end is before start")
        if (self.end - self.start).days >= MAX_DAYS:
            raise ValueError(f"at most {MAX_DAYS} days")


@dataclass
class _Day:
    """One day's counts: (key, metric) -> [total, total_all, unique, unique_all];
    (key, url) -> [clicks, clicks_all]."""

    stats: dict[tuple[Key, str], list[int]]
    links: dict[tuple[Key, str], list[int]]


def report(q: Query, now: datetime | None = None, links: int = 10) -> dict:
    """Everything the Statistics page shows, as plain data:
    ``{"days": [{"day": date, <metric>: n, ...}, ...] (every day of the range, in order),
    "totals": {<metric>: n, ..., "unique_opened": n, "unique_clicked": n},
    "links": [{"url": str, "clicks": n}, ...] (most clicked first, at most ``links``)}``."""
    now = now or timezone.now()
    per_day: dict[date, dict[str, int]] = {d: dict.fromkeys(METRICS, 0) for d in _days(q)}
    totals = dict.fromkeys(METRICS, 0) | {"unique_opened": 0, "unique_clicked": 0}
    clicks: dict[str, int] = defaultdict(int)
    for day, metric, total, total_all, unique, unique_all in _stat_rows(q, now):
        n = total_all if q.machine else total
        per_day[day][metric] += n
        totals[metric] += n
        if metric in ("opened", "clicked"):
            totals[f"unique_{metric}"] += unique_all if q.machine else unique
    for url, n, n_all in _link_rows(q, now):
        clicks[url] += n_all if q.machine else n
    top = sorted(((n, url) for url, n in clicks.items() if n), key=lambda x: (-x[0], x[1]))
    return {"days": [{"day": d, **counts} for d, counts in per_day.items()],
            "totals": totals,
            "links": [{"url": url, "clicks": n} for n, url in top[:links]]}


def daily(q: Query, now: datetime | None = None) -> list[dict]:
    """Per day of the range: ``{"day": date, "sent": n, "delivered": n, "hard": n, ...}``."""
    return report(q, now, links=0)["days"]


def top_links(q: Query, limit: int = 10, now: datetime | None = None) -> list[dict]:
    """The most clicked URLs of the range: ``[{"url": str, "clicks": n}, ...]``."""
    return report(q, now, links=limit)["links"]


def last_closed_day(now: datetime) -> date:
    """The latest day that is rolled up rather than counted at read time."""
    return (now.astimezone(UTC) - GRACE).date() - timedelta(days=1)


def roll_up(start: date, end: date, now: datetime | None = None) -> int:
    """Roll up every closed day from ``start`` to ``end`` not rolled up yet; how many were.
    Each day is one transaction; two processes rolling up one day: one wins, the other's
    insert of the RolledDay row fails and its rows are rolled back."""
    last = min(end, last_closed_day(now or timezone.now()))
    if last < start:
        return 0
    done = set(RolledDay.objects.filter(day__range=(start, last)).values_list("day", flat=True))
    rolled = 0
    for day in _range(start, last):
        if day in done:
            continue
        counted = count_day(day)
        try:
            with transaction.atomic():
                RolledDay.objects.create(day=day)
                DailyStat.objects.bulk_create(
                    (DailyStat(day=day, owner_id=o, login_id=lg, tag=t, metric=m, total=v[0],
                               total_all=v[1], unique=v[2], unique_all=v[3])
                     for ((o, lg, t), m), v in counted.stats.items()), batch_size=1000)
                DailyLink.objects.bulk_create(
                    (DailyLink(day=day, owner_id=o, login_id=lg, tag=t, url=url, clicks=v[0],
                               clicks_all=v[1])
                     for ((o, lg, t), url), v in counted.links.items()), batch_size=1000)
        except IntegrityError:  # rolled up meanwhile by another process
            continue
        rolled += 1
    return rolled


def count_day(day: date) -> _Day:
    """Every owner's counts of one UTC day, from the messages and events (nothing stored)."""
    start, end = _bounds(day)
    out = _Day(defaultdict(lambda: [0, 0, 0, 0]), defaultdict(lambda: [0, 0]))
    from relay.models import Message, Recipient

    sent = list(Recipient.objects.filter(message__kind=Message.Kind.SUBMISSION,
                                         message__dsn_of__isnull=True,
                                         message__received_at__gte=start,
                                         message__received_at__lt=end)
                .values_list("message_id").annotate(n=Count("id")).order_by())
    conn = connections[DEFAULT_DB_ALIAS]
    with conn.cursor() as cursor:
        cursor.execute(_day_sql(conn), [start, end, *_COUNTED])
        groups = cursor.fetchall()
    keys = _keys({m for m, _ in sent} | {g[1] for g in groups})
    for message_id, n in sent:
        for key in keys.get(message_id, ()):
            _add(out.stats[(key, "sent")], n, n)
    # Per tracked (type, recipient): whether it had a human / any event today.
    today: dict[tuple[str, int], list[bool]] = {}
    for type_, _, recipient_id, machine, _, _, _ in groups:
        if type_ in _TRACKED and recipient_id is not None:
            seen = today.setdefault((type_, recipient_id), [False, False])
            seen[0] = seen[0] or not machine
            seen[1] = True
    earlier = _seen_before(today, start)
    counted: set[tuple[str, int]] = set()  # uniques go to the recipient's first group only
    for type_, message_id, recipient_id, machine, klass, url, n in groups:
        if type_ in _TRACKED:
            metric = _TRACKED[type_]
        elif type_ == Event.Type.DELIVERY:
            metric = "delivered"
        elif type_ == Event.Type.COMPLAINT:
            metric = "complaints"
        else:
            metric = "soft" if klass == "soft" else "hard"
        first = first_all = 0
        if type_ in _TRACKED and recipient_id is not None \
                and (type_, recipient_id) not in counted:
            counted.add((type_, recipient_id))
            human, _any = today[(type_, recipient_id)]
            first = int(human and (type_, recipient_id) not in earlier[False])
            first_all = int((type_, recipient_id) not in earlier[True])
        for key in keys.get(message_id, ()):
            counts = out.stats[(key, metric)]
            counts[0] += 0 if machine else n
            counts[1] += n
            counts[2] += first
            counts[3] += first_all
            if type_ == Event.Type.CLICK and url:
                link = out.links[(key, url)]
                link[0] += 0 if machine else n
                link[1] += n
    return out


@per_vendor
def _day_sql(conn) -> str:
    """One day's counted events grouped by type, message, recipient, machine-flagged or not,
    class and URL: the JSON is read by the database, not decoded row by row in Python."""
    qn = conn.ops.quote_name
    col = {f: qn(Event._meta.get_field(f).column)
           for f in ("type", "message", "recipient", "flags", "data", "time")}
    if conn.vendor == "postgresql":
        machine = f"(jsonb_array_length({col['flags']}) > 0)"
        klass, url = f"({col['data']} ->> 'class')", f"({col['data']} ->> 'url')"
    else:
        machine = f"(json_array_length({col['flags']}) > 0)"
        klass = f"json_extract({col['data']}, '$.class')"
        url = f"json_extract({col['data']}, '$.url')"
    placeholders = ", ".join(["%s"] * len(_COUNTED))
    return (f"SELECT {col['type']}, {col['message']}, {col['recipient']}, {machine}, {klass}, "
            f"{url}, COUNT(*) FROM {qn(Event._meta.db_table)} "
            f"WHERE {col['time']} >= %s AND {col['time']} < %s "
            f"AND {col['type']} IN ({placeholders}) AND {col['message']} IS NOT NULL "
            f"GROUP BY 1, 2, 3, 4, 5, 6")


# -- reading ------------------------------------------------------------------------------------


def _stat_rows(q: Query, now: datetime) -> Iterator[tuple[date, str, int, int, int, int]]:
    last = last_closed_day(now)
    if q.start <= last:
        roll_up(q.start, min(q.end, last), now)
        rows = DailyStat.objects.filter(day__range=(q.start, min(q.end, last)), tag=q.tag)
        yield from _mine(rows, q).values_list("day", "metric", "total", "total_all", "unique",
                                              "unique_all")
    for day in _range(max(q.start, last + timedelta(days=1)), q.end):
        for ((owner, login, tag), metric), v in _live(day, now).stats.items():
            if _wanted(q, owner, login, tag):
                yield day, metric, *v


def _link_rows(q: Query, now: datetime) -> Iterator[tuple[str, int, int]]:
    last = last_closed_day(now)
    if q.start <= last:  # rolled up by _stat_rows
        rows = DailyLink.objects.filter(day__range=(q.start, min(q.end, last)), tag=q.tag)
        yield from _mine(rows, q).values_list("url", "clicks", "clicks_all")
    for day in _range(max(q.start, last + timedelta(days=1)), q.end):
        for ((owner, login, tag), url), v in _live(day, now).links.items():
            if _wanted(q, owner, login, tag):
                yield url, *v


_LIVE: dict[date, tuple[float, _Day]] = {}
_LIVE_LOCK = threading.Lock()


def _live(day: date, now: datetime) -> _Day:
    """count_day(day) for a day not rolled up yet, reused for STATS_LIVE_CACHE_SECONDS (per
    process: a page reads it twice, and reloads should not recount ten thousand events)."""
    ttl = settings.STATS_LIVE_CACHE_SECONDS
    clock = monotonic()
    with _LIVE_LOCK:
        for old in [d for d, (at, _) in _LIVE.items() if clock - at > ttl]:
            del _LIVE[old]
        hit = _LIVE.get(day)
    if hit is not None and ttl > 0:
        return hit[1]
    counted = count_day(day)
    with _LIVE_LOCK:
        _LIVE[day] = (clock, counted)
    return counted


def forget_live() -> None:
    """Drop the reused counts of the open days (tests, after writing events)."""
    with _LIVE_LOCK:
        _LIVE.clear()


def _mine(rows, q: Query):
    if q.owner_id is not None:
        rows = rows.filter(owner_id=q.owner_id)
    if q.login_id is not None:
        rows = rows.filter(login_id=q.login_id)
    return rows


def _wanted(q: Query, owner: int, login: int, tag: str) -> bool:
    return (tag == q.tag and (q.owner_id is None or owner == q.owner_id)
            and (q.login_id is None or login == q.login_id))


# -- counting helpers ---------------------------------------------------------------------------


def _add(counts: list[int], total: int, total_all: int) -> None:
    counts[0] += total
    counts[1] += total_all


def _keys(message_ids: Iterable[int]) -> dict[int, list[Key]]:
    """For each message: the keys its counts go to, (owner, login, "") and one per tag."""
    from relay.services import message_owners

    keys: dict[int, list[Key]] = {}
    for pk, (owner, login, tags) in message_owners(sorted(message_ids), _CHUNK).items():
        login = login or 0
        mine = [(owner, login, "")]
        for tag in dict.fromkeys(t for t in tags if isinstance(t, str) and t):
            mine.append((owner, login, tag[:TAG_LENGTH]))
        keys[pk] = mine
    return keys


def _seen_before(today: dict[tuple[str, int], list[bool]], start: datetime
                 ) -> dict[bool, set[tuple[str, int]]]:
    """Of the day's (type, recipient) opens/clicks, those that had one before the day: [True]
    any, [False] a human one. Probes of the index event_rcpt_type_time, _CHUNK at a time."""
    wanted: dict[str, list[int]] = defaultdict(list)
    for type_, recipient_id in today:
        wanted[type_].append(recipient_id)
    before: dict[bool, set[tuple[str, int]]] = {True: set(), False: set()}
    conn = connections[DEFAULT_DB_ALIAS]
    sql = _before_sql(conn)
    with conn.cursor() as cursor:
        for type_, recipients in wanted.items():
            ids = sorted(recipients)
            for n in range(0, len(ids), _CHUNK):
                chunk = ids[n:n + _CHUNK]
                cursor.execute(sql.format(ids=", ".join(["%s"] * len(chunk))),
                               [type_, start, *chunk])
                for recipient_id, human in cursor.fetchall():
                    before[True].add((type_, recipient_id))
                    if human:
                        before[False].add((type_, recipient_id))
    return before


@per_vendor
def _before_sql(conn) -> str:
    """Recipients (``{ids}``) with an event of a type before a time, and whether one of them
    was a human's (no flags)."""
    qn = conn.ops.quote_name
    col = {f: qn(Event._meta.get_field(f).column) for f in ("type", "recipient", "flags",
                                                             "time")}
    length = "jsonb_array_length" if conn.vendor == "postgresql" else "json_array_length"
    return (f"SELECT {col['recipient']}, MAX(CASE WHEN {length}({col['flags']}) = 0 THEN 1 "
            f"ELSE 0 END) FROM {qn(Event._meta.db_table)} WHERE {col['type']} = %s "
            f"AND {col['time']} < %s AND {col['recipient']} IN ({{ids}}) "
            f"GROUP BY {col['recipient']}")


def _bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def _range(start: date, end: date) -> Iterator[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def _days(q: Query) -> list[date]:
    return list(_range(q.start, q.end))
