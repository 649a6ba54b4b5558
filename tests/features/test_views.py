"""Click and open endpoints over HTTP: signed tokens only, Events written, machine flags."""
from datetime import timedelta

import pytest
from django.utils import timezone

from events.models import Event
from features import services
from features.tokens import CLICK, OPEN, make_token
from features.views import PIXEL_GIF
from relay.models import Message, Recipient

from .corpus import message, part

pytestmark = pytest.mark.django_db
HTML = ('<html><body><a href="https://example.com/a?x=1&amp;y=2">Read</a> '
        '<a href="https://example.com/b">www.example.com/b</a>'
        '<img src="https://img.example/logo.png"></body></html>')
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"


@pytest.fixture(autouse=True)
def _fresh_cache():
    services.forget_links()
    yield
    services.forget_links()


@pytest.fixture
def sent():
    raw = message(part("text/html", HTML.encode(), "utf-8", "8bit"))
    msg = Message.objects.create(
        raw=raw, mail_from="s@example.com", size=len(raw),
        features={"clicktracking": True, "openstracking": True, "preventscam": False},
    )
    rcpt = Recipient.objects.create(message=msg, address="r@example.org")
    return msg, rcpt


def urls_in(msg, rcpt):
    import re

    body = services.render_for(msg, rcpt).message.decode()
    return re.findall(r'(?:href|src)="http://127\.0\.0\.1:8000(/t/[co]/[A-Za-z0-9_-]+)"', body)


def test_rendered_links_redirect_to_their_urls_and_record_clicks(client, sent):
    msg, rcpt = sent
    click_a, click_b, image, pixel = urls_in(msg, rcpt)
    response = client.get(click_a, HTTP_USER_AGENT=BROWSER, REMOTE_ADDR="198.51.100.7")
    assert response.status_code == 302
    assert response["Location"] == "https://example.com/a?x=1&y=2"
    assert "no-store" in response["Cache-Control"]
    event = Event.objects.get(type="click")
    assert (event.message_id, event.recipient_id) == (msg.pk, rcpt.pk)
    assert event.data["url"] == "https://example.com/a?x=1&y=2"
    assert event.data["ip"] == "198.51.100.7" and event.data["user_agent"] == BROWSER
    assert event.flags == []
    assert abs((timezone.now() - event.time).total_seconds()) < 60
    assert client.get(click_b, HTTP_USER_AGENT=BROWSER)["Location"] == "https://example.com/b"
    response = client.get(image, HTTP_USER_AGENT=BROWSER)
    assert response.status_code == 302 and response["Location"] == "https://img.example/logo.png"
    response = client.get(pixel, HTTP_USER_AGENT=BROWSER)
    assert response.status_code == 200 and response["Content-Type"] == "image/gif"
    assert response.content == PIXEL_GIF and "no-store" in response["Cache-Control"]
    assert Event.objects.filter(type="open").count() == 2
    assert Event.objects.filter(type="click").count() == 2


def test_the_endpoints_need_no_sign_in_and_survive_a_cold_cache(client, sent):
    msg, rcpt = sent
    click_a = urls_in(msg, rcpt)[0]
    services.forget_links()
    assert client.get(click_a).status_code == 302


def tampered(token: str) -> list[str]:
    flip = "A" if token[5] != "A" else "B"
    return [token[:5] + flip + token[6:], token[:-1], token[:12], token + "x", "", "x" * 27,
            token.swapcase()]


def test_tampered_truncated_or_unknown_tokens_get_404_and_no_event(client, sent):
    msg, rcpt = sent
    key = services.tracking_key()
    first = "https://example.com/a?x=1&y=2"
    token = make_token(key, CLICK, msg.pk, rcpt.pk, 0, first)
    bad = tampered(token) + [
        make_token(key, CLICK, msg.pk + 1000, rcpt.pk, 0, first),  # no such message
        make_token(key, CLICK, msg.pk, rcpt.pk + 1000, 0, first),  # no such recipient
        make_token(key, CLICK, msg.pk, rcpt.pk, 99, first),  # no such link
        make_token(key, CLICK, msg.pk, rcpt.pk, 0, "https://evil.example/"),  # other URL
        make_token(key, OPEN, msg.pk, rcpt.pk, 0, first),  # an open token on the click endpoint
    ]
    for t in bad:
        response = client.get(f"/t/c/{t}")
        assert response.status_code == 404, t
        assert "Location" not in response
    click_as_open = make_token(key, CLICK, msg.pk, rcpt.pk, 0, first)
    assert client.get(f"/t/o/{click_as_open}").status_code == 404
    assert not Event.objects.exists()
    assert client.get(f"/t/c/{token}").status_code == 302


def test_a_link_list_that_derives_differently_gives_404_not_another_link(client, sent):
    msg, rcpt = sent
    click_a = urls_in(msg, rcpt)[0]
    # Say an upgrade changed what is tracked: index 0 now names another URL.
    msg.raw = msg.raw.replace(b"https://example.com/a?x=1&amp;y=2", b"https://other.example/")
    msg.save()
    services.forget_links()
    response = client.get(click_a)
    assert response.status_code == 404 and "Location" not in response
    assert not Event.objects.exists()


def test_another_messages_recipient_is_refused(client, sent):
    msg, _ = sent
    other = Message.objects.create(raw=b"Subject: x\r\n\r\nx", features={})
    stranger = Recipient.objects.create(message=other, address="x@example.org")
    token = make_token(services.tracking_key(), CLICK, msg.pk, stranger.pk, 0,
                       "https://example.com/a?x=1&y=2")
    assert client.get(f"/t/c/{token}").status_code == 404


def test_post_is_not_allowed(client, sent):
    msg, rcpt = sent
    assert client.post(urls_in(msg, rcpt)[0]).status_code == 405


@pytest.mark.parametrize("agent, method, flags", [
    (BROWSER, "get", []),
    (BROWSER, "head", ["head"]),
    ("", "get", ["no-user-agent"]),
    ("Mozilla/5.0 (compatible; Barracuda Sentinel)", "get", ["scanner"]),
    ("Microsoft Office SafeLinks", "get", ["scanner"]),
    ("python-requests/2.31", "get", ["scanner"]),
    ("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
     "get", ["proxy"]),
])
def test_machine_clicks_are_flagged_not_dropped(client, sent, agent, method, flags):
    msg, rcpt = sent
    response = getattr(client, method)(urls_in(msg, rcpt)[0], HTTP_USER_AGENT=agent)
    assert response.status_code == 302
    assert Event.objects.get(type="click").flags == flags


def test_a_click_right_after_delivery_is_flagged_fast(client, sent):
    msg, rcpt = sent
    url = urls_in(msg, rcpt)[0]
    old = Event.objects.create(type="delivery", message=msg, recipient=rcpt)
    Event.objects.filter(pk=old.pk).update(time=timezone.now() - timedelta(hours=1))
    client.get(url, HTTP_USER_AGENT=BROWSER)
    assert Event.objects.filter(type="click").latest("id").flags == []
    Event.objects.create(type="delivery", message=msg, recipient=rcpt)  # just now
    client.get(url, HTTP_USER_AGENT=BROWSER)
    assert Event.objects.filter(type="click").latest("id").flags == ["fast"]


def test_bounce_ids_reads_only_genuine_verp_addresses(sent, settings):
    msg, rcpt = sent
    settings.BOUNCE_DOMAIN = "bounces.example.net"
    msg.features = {"bouncetracking": True}
    out = services.render_for(msg, rcpt)
    assert out.envelope_sender.endswith("@bounces.example.net")
    assert services.bounce_ids(out.envelope_sender) == (msg.pk, rcpt.pk)
    assert services.bounce_ids(out.envelope_sender.replace("@", "1@")) is None



def test_the_fast_flag_lookup_uses_the_recipient_type_time_index(sent):
    from django.db import connection

    from events.models import Event

    msg, rcpt = sent
    Event.objects.create(type="delivery", message=msg, recipient=rcpt)
    from events.services import last_delivery_sql

    params = ["delivery", rcpt.pk]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")  # a tiny table would be scanned
            cursor.execute("EXPLAIN " + last_delivery_sql(), params)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + last_delivery_sql(), params)
        plan = " ".join(str(row) for row in cursor.fetchall())
    assert "event_rcpt_type_time" in plan, plan
    assert services.delivery_of(msg.pk, rcpt.pk)[0] is not None


@pytest.fixture
def refusing_event_inserts():
    """A trigger makes the database itself refuse every new Event (the test's transaction
    rolls it back): a real database error, raised where an outage or a lock timeout would be."""
    from django.db import connection

    table = Event._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("CREATE FUNCTION refuse_event() RETURNS trigger LANGUAGE plpgsql AS "
                           "$$ BEGIN RAISE EXCEPTION 'events refused by test'; END $$")
            cursor.execute(f"CREATE TRIGGER refuse_event BEFORE INSERT ON {table} "
                           "FOR EACH ROW EXECUTE FUNCTION refuse_event()")
        else:
            cursor.execute(f"CREATE TRIGGER refuse_event BEFORE INSERT ON {table} "
                           "BEGIN SELECT RAISE(ABORT, 'events refused by test'); END")


def test_a_database_error_while_recording_still_redirects_and_serves_the_pixel(
        client, sent, refusing_event_inserts, caplog):
    msg, rcpt = sent
    click_a, _, image, pixel = urls_in(msg, rcpt)
    response = client.get(click_a, HTTP_USER_AGENT=BROWSER, REMOTE_ADDR="198.51.100.7")
    assert response.status_code == 302
    assert response["Location"] == "https://example.com/a?x=1&y=2"
    response = client.get(image, HTTP_USER_AGENT=BROWSER)
    assert response.status_code == 302 and response["Location"] == "https://img.example/logo.png"
    response = client.get(pixel, HTTP_USER_AGENT=BROWSER)
    assert response.status_code == 200 and response.content == PIXEL_GIF
    assert not Event.objects.filter(type__in=["click", "open"]).exists()
    errors = [r for r in caplog.records if r.levelname == "ERROR" and r.name == "features.views"]
    assert len(errors) == 3
    line = errors[0].getMessage()
    assert f"message={msg.pk}" in line and f"recipient={rcpt.pk}" in line and "click" in line
    token = click_a.rsplit("/", 1)[1]
    assert all(token not in r.getMessage() and "198.51.100.7" not in r.getMessage()
               for r in errors)


@pytest.mark.parametrize("trusted, expected", [(False, "10.0.0.5"), (True, "203.0.113.9")])
def test_events_record_the_client_address_the_sign_in_code_uses(client, sent, settings,
                                                                trusted, expected):
    # Behind our own proxy REMOTE_ADDR is the proxy; with TRUST_X_FORWARDED_FOR the last
    # X-Forwarded-For entry (the one the proxy appended) is the reader. Not trusted, the
    # header is the client's own claim and is ignored.
    settings.TRUST_X_FORWARDED_FOR = trusted
    msg, rcpt = sent
    click_a, _, _, pixel = urls_in(msg, rcpt)
    forwarded = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "192.0.2.1, 203.0.113.9"}
    assert client.get(click_a, HTTP_USER_AGENT=BROWSER, **forwarded).status_code == 302
    assert client.get(pixel, HTTP_USER_AGENT=BROWSER, **forwarded).status_code == 200
    assert Event.objects.get(type="click").data["ip"] == expected
    assert Event.objects.get(type="open").data["ip"] == expected


@pytest.mark.parametrize("trusted, expected", [(False, "10.0.0.5"), (True, "203.0.113.9")])
def test_a_bad_token_is_logged_with_the_client_address(client, settings, caplog,
                                                       trusted, expected):
    settings.TRUST_X_FORWARDED_FOR = trusted
    response = client.get("/t/c/" + "x" * 27, REMOTE_ADDR="10.0.0.5",
                          HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert response.status_code == 404
    assert any(r.getMessage() == f"tracking click: bad token from {expected}"
               for r in caplog.records)


def test_the_link_cache_keeps_within_its_bound_of_url_characters(client, monkeypatch):
    # A customer can send messages of 1,000 links of 8 KB each; clicking them must not grow
    # the click endpoint's memory without end.
    monkeypatch.setattr(services, "_CACHE_CHARS", 100_000)
    long = "https://example.com/" + "x" * 8000
    html = "".join(f'<a href="{long}{i}">l</a>' for i in range(5)).encode()
    for n in range(6):
        raw = message(part("text/html", html, "utf-8", "8bit"))
        msg = Message.objects.create(raw=raw, mail_from="s@example.com", size=len(raw),
                                     features={"clicktracking": True})
        rcpt = Recipient.objects.create(message=msg, address=f"r{n}@example.org")
        first = urls_in(msg, rcpt)[0]
        assert client.get(first, HTTP_USER_AGENT=BROWSER)["Location"] == f"{long}0"
        entries, chars = services.cached_link_chars()
        assert chars <= 100_000 and entries <= 2  # ~40 KB of URLs per message
    assert Event.objects.filter(type="click").count() == 6


def _store(msg):
    from relay.queue import store_links

    prepared = services.prepare_message(bytes(msg.raw), msg.features)
    store_links(msg.pk, prepared.links, prepared.images)


def test_a_click_looks_its_url_up_in_the_stored_lists_and_never_reads_the_message(
        client, sent):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    msg, rcpt = sent
    click_a, click_b, image, pixel = urls_in(msg, rcpt)
    _store(msg)  # what delivery does when it first prepares the message
    # The message now derives other lists: only stored ones give the URLs the tokens name.
    Message.objects.filter(pk=msg.pk).update(raw=message(part(
        "text/html", b'<a href="https://elsewhere.example/">x</a>', "utf-8", "8bit")))
    with CaptureQueriesContext(connection) as queries:
        response = client.get(click_a, HTTP_USER_AGENT=BROWSER)
    assert (response.status_code, response["Location"]) == (302, "https://example.com/a?x=1&y=2")
    assert not any(Message._meta.db_table + '"' in q["sql"].replace("`", '"')
                   and "raw" in q["sql"] for q in queries.captured_queries), queries
    assert services.cached_link_chars() == (0, 0)  # nothing derived, nothing cached
    assert client.get(click_b, HTTP_USER_AGENT=BROWSER)["Location"] == "https://example.com/b"
    assert client.get(image, HTTP_USER_AGENT=BROWSER)["Location"] == (
        "https://img.example/logo.png")
    assert client.get(pixel, HTTP_USER_AGENT=BROWSER).content == PIXEL_GIF
    assert Event.objects.filter(type="click").count() == 2
    assert Event.objects.filter(type="open").count() == 2


def test_with_stored_lists_an_index_past_their_end_is_not_found(client, sent):
    msg, rcpt = sent
    _store(msg)
    key = services.tracking_key()
    beyond = make_token(key, CLICK, msg.pk, rcpt.pk, 2, "https://example.com/a?x=1&y=2")
    assert client.get(f"/t/c/{beyond}").status_code == 404
    other = make_token(key, OPEN, msg.pk, rcpt.pk, 2, "https://img.example/logo.png")
    assert client.get(f"/t/o/{other}").status_code == 404
    assert not Event.objects.filter(type__in=["click", "open"]).exists()


def test_store_links_writes_once_and_wants_the_pixel_first(sent):
    from relay.models import TrackedLink
    from relay.queue import store_links
    from relay.services import tracked_url

    msg, _ = sent
    assert tracked_url(msg.pk, "c", 0) == (False, None)
    store_links(msg.pk, ["https://example.com/a"], ["", "https://img.example/1.png"])
    store_links(msg.pk, ["https://example.com/changed"], [""])  # a second writer: no change
    assert tracked_url(msg.pk, "c", 0) == (True, "https://example.com/a")
    assert tracked_url(msg.pk, "c", 1) == (True, None)
    assert tracked_url(msg.pk, "o", 0) == (True, "")
    assert tracked_url(msg.pk, "o", 1) == (True, "https://img.example/1.png")
    assert TrackedLink.objects.filter(message=msg).count() == 3
    with pytest.raises(ValueError, match="pixel"):
        store_links(msg.pk, [], ["https://img.example/1.png"])
