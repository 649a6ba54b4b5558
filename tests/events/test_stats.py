"""events.stats against known events: the counts per day, uniques, links, filters by login and
tag, machine-flagged events, owner isolation, and that a rolled-up day reads the same as a day
counted from the events (and keeps its counts when the events are gone)."""
from datetime import UTC, date, datetime, timedelta

import pytest

from credentials import services as logins
from events import stats
from events.models import DailyStat, Event, RolledDay
from relay.models import Message, Recipient

pytestmark = pytest.mark.django_db

D1, D2, D3 = date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)  # D1..D3 closed: rolled up when read


@pytest.fixture(autouse=True)
def _fresh_counts():
    stats.forget_live()  # the open days' counts are reused per process
    yield
    stats.forget_live()


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def message(owner, login=None, tags=(), day=D1, recipients=1):
    m = Message.objects.create(owner=owner, login=login, tags=list(tags), raw=b"x")
    Message.objects.filter(pk=m.pk).update(received_at=at(day, 9))
    rs = [Recipient.objects.create(message=m, address=f"r{n}@example.org", state="delivered")
          for n in range(recipients)]
    return m, rs


def event(type_, m, r, day, data=None, flags=(), hour=10):
    e = Event.objects.create(type=type_, message=m, recipient=r, data=data or {},
                             flags=list(flags))
    Event.objects.filter(pk=e.pk).update(time=at(day, hour))
    return e


@pytest.fixture
def world(alice, bob):
    """Alice: a login 'shop' with tag 'sale' mail and an untagged message; Bob: one message."""
    shop, _ = logins.create_login(alice)
    other, _ = logins.create_login(alice)
    m1, (a, b, c) = message(alice, shop, ["sale", "nov"], D1, recipients=3)
    m2, (d,) = message(alice, other, [], D2)
    m3, (e,) = message(bob, None, ["sale"], D1)
    for r in (a, b, c):
        event("delivery", m1, r, D1)
    event("failure", m1, c, D1, {"class": "hard"})  # (a bounce after delivery, say)
    event("bounce", m1, b, D2, {"class": "soft"})
    event("complaint", m1, a, D2)
    event("open", m1, a, D1)
    event("open", m1, a, D1, hour=11)  # same recipient again: total 2, unique 1
    event("open", m1, a, D2)  # a later day: not unique again
    event("open", m1, b, D2, flags=["prefetch"])  # machine
    event("open", m1, b, D3)  # b's first human open: unique on D3, not on D2
    event("click", m1, a, D2, {"url": "https://shop.example/a"})
    event("click", m1, a, D2, {"url": "https://shop.example/a"})
    event("click", m1, b, D2, {"url": "https://shop.example/b"})
    event("click", m1, c, D3, {"url": "https://shop.example/b"}, flags=["scanner"])
    event("delivery", m2, d, D2)
    event("delivery", m3, e, D1)
    event("complaint", m3, e, D1)
    return {"shop": shop, "other": other}


def by_day(report):
    return {d["day"]: {k: v for k, v in d.items() if k != "day" and v} for d in report["days"]}


def test_counts_per_day_for_an_owner(alice, world):
    q = stats.Query(alice.pk, D1, D3)
    got = stats.report(q, NOW)
    assert by_day(got) == {
        D1: {"sent": 3, "delivered": 3, "hard": 1, "opened": 2},
        D2: {"sent": 1, "delivered": 1, "soft": 1, "complaints": 1, "opened": 1, "clicked": 3},
        D3: {"opened": 1},
    }
    assert got["totals"] == {"sent": 4, "delivered": 4, "hard": 1, "soft": 1, "complaints": 1,
                             "opened": 4, "clicked": 3, "unique_opened": 2,
                             "unique_clicked": 2}
    assert got["links"] == [{"url": "https://shop.example/a", "clicks": 2},
                            {"url": "https://shop.example/b", "clicks": 1}]


def test_machine_flagged_opens_and_clicks_only_when_asked(alice, world):
    got = stats.report(stats.Query(alice.pk, D1, D3, machine=True), NOW)
    assert (got["totals"]["opened"], got["totals"]["clicked"]) == (5, 4)
    # b's first open of any kind was the machine's, on D2; c's click on D3.
    assert (got["totals"]["unique_opened"], got["totals"]["unique_clicked"]) == (2, 3)
    assert by_day(got)[D2]["opened"] == 2
    assert got["links"][0] == {"url": "https://shop.example/a", "clicks": 2}
    assert {"url": "https://shop.example/b", "clicks": 2} in got["links"]


def test_filters_by_login_and_tag(alice, world):
    shop, other = world["shop"], world["other"]
    assert stats.report(stats.Query(alice.pk, D1, D3, login_id=other.pk), NOW)["totals"][
        "delivered"] == 1
    sale = stats.report(stats.Query(alice.pk, D1, D3, tag="sale"), NOW)["totals"]
    assert (sale["sent"], sale["delivered"], sale["complaints"]) == (3, 3, 1)  # not Bob's
    both = stats.report(stats.Query(alice.pk, D1, D3, login_id=shop.pk, tag="nov"), NOW)
    assert both["totals"]["opened"] == 4
    assert stats.report(stats.Query(alice.pk, D1, D3, login_id=other.pk, tag="sale"),
                        NOW)["totals"]["sent"] == 0


def test_another_owner_sees_only_their_own(alice, bob, world):
    got = stats.report(stats.Query(bob.pk, D1, D3), NOW)
    assert got["totals"]["sent"] == 1 and got["totals"]["complaints"] == 1
    assert got["links"] == []
    # Alice's login asked for with Bob as the owner: nothing.
    assert stats.report(stats.Query(bob.pk, D1, D3, login_id=world["shop"].pk),
                        NOW)["totals"] == dict.fromkeys(got["totals"], 0)


def test_a_rolled_up_day_reads_like_a_counted_one_and_outlives_its_events(alice, world):
    q = stats.Query(alice.pk, D1, D3)
    live = stats.report(q, datetime(2026, 11, 20, 12, tzinfo=UTC) + timedelta(days=2))
    assert not RolledDay.objects.filter(day=D3).exists()  # D3 was still open then
    rolled = stats.report(q, NOW)
    assert set(RolledDay.objects.values_list("day", flat=True)) >= {D1, D2, D3}
    assert rolled == live
    Message.objects.all().delete()  # retention: the events go, the statistics stay
    assert stats.report(q, NOW) == rolled
    assert DailyStat.objects.filter(owner=alice).exists()


def test_rolling_up_a_day_twice_counts_it_once(alice, world):
    assert stats.roll_up(D1, D3, NOW) == 3
    assert stats.roll_up(D1, D3, NOW) == 0
    assert stats.report(stats.Query(alice.pk, D1, D1), NOW)["totals"]["sent"] == 3


def test_a_bad_range_is_refused():
    with pytest.raises(ValueError):
        stats.Query(1, D2, D1)
    with pytest.raises(ValueError):
        stats.Query(1, D1, D1 + timedelta(days=stats.MAX_DAYS))


# -- the page ------------------------------------------------------------------------------


def test_the_page_shows_the_totals_the_chart_and_the_links(alice, world, client):
    client.force_login(alice)
    page = client.get("/stats/?start=2026-11-20&end=2026-11-22").content.decode()
    assert '<dd id="total-sent">4</dd>' in page and '<span id="unique-opened">2</span>' in page
    assert '<span id="total-opened">4</span>' in page
    assert page.count('<circle ') == 3 * 7 and 'class="series series-clicked"' in page
    assert 'data-day="2026-11-21"' in page and "https://shop.example/a" in page
    machine = client.get("/stats/?start=2026-11-20&end=2026-11-22&machine=on").content.decode()
    assert '<span id="total-opened">5</span>' in machine
    tagged = client.get("/stats/?start=2026-11-20&end=2026-11-22&tag=sale").content.decode()
    assert '<dd id="total-sent">3</dd>' in tagged
    login = client.get(f"/stats/?start=2026-11-20&end=2026-11-22&login={world['other'].pk}")
    assert '<dd id="total-sent">1</dd>' in login.content.decode()


def test_another_customers_login_is_not_found_and_their_tag_shows_nothing(alice, bob, world,
                                                                         client):
    client.force_login(bob)
    assert client.get(f"/stats/?login={world['shop'].pk}").status_code == 404
    assert client.get("/stats/?login=abc").status_code == 404
    page = client.get("/stats/?start=2026-11-20&end=2026-11-22&tag=nov").content.decode()
    assert '<dd id="total-sent">0</dd>' in page and "shop.example" not in page
    # Bob's own tag "sale" counts only Bob's message.
    page = client.get("/stats/?start=2026-11-20&end=2026-11-22&tag=sale").content.decode()
    assert '<dd id="total-sent">1</dd>' in page
    # A customer cannot ask for another customer's numbers.
    page = client.get("/stats/?start=2026-11-20&end=2026-11-22&customer=alice").content.decode()
    assert '<dd id="total-sent">1</dd>' in page and 'name="customer"' not in page


def test_staff_see_one_customer_or_everyone(alice, bob, staff, world, client):
    client.force_login(staff)
    base = "/stats/?start=2026-11-20&end=2026-11-22"
    assert '<dd id="total-sent">5</dd>' in client.get(base).content.decode()
    assert '<dd id="total-sent">4</dd>' in client.get(base + "&customer=alice").content.decode()
    assert client.get(base + "&customer=nobody").status_code == 404


@pytest.mark.parametrize("query", ["start=2026-11-22&end=2026-11-20", "start=2020-01-01",
                                   "start=yesterday"])
def test_a_bad_range_is_a_400_with_the_form(alice, client, query):
    client.force_login(alice)
    response = client.get(f"/stats/?{query}")
    assert response.status_code == 400 and 'class="error"' in response.content.decode()


def test_signed_out_visitors_are_sent_to_sign_in(client):
    response = client.get("/stats/")
    assert response.status_code == 302 and "/signin/" in response["Location"]


def test_rollupstats_rolls_up_the_closed_days_once(alice, world):
    from io import StringIO

    from django.core.management import call_command
    from django.utils import timezone

    days = str((timezone.now().date() - D1).days + 1)
    out = StringIO()
    call_command("rollupstats", "--days", days, stdout=out)
    assert out.getvalue().startswith("rolled up ")
    assert RolledDay.objects.filter(day__in=[D1, D2, D3]).count() == 3
    call_command("rollupstats", "--days", days, stdout=out)
    assert "rolled up 0 day(s)" in out.getvalue()
