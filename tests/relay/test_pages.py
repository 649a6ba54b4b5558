"""The dashboard's queue pages through Django's test client: Messages (search, filters, pages),
a message's page (envelope, features, recipients, attempts, timeline, DSNs), its raw source and
its sandboxed HTML, the Outbox, who may see what, and the audited staff actions."""
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from credentials import services as logins
from events.models import Event
from events.services import record
from features.services import forget_links, render_for
from relay import queue
from relay.headers import subject_of
from relay.models import Attempt, Capture, Message, QueueAudit, Recipient
from relay.queue import Result
from relay.views import HTML_POLICY

pytestmark = pytest.mark.django_db
S = Recipient.State

HTML = (b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= from the shop\r\n"
        b"X-SMTPeter-Tags: news\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nRead the article\r\n"
        b"--b1\r\nContent-Type: text/html; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b'<p>Caf=E9 <a href=3D"https://example.com/article">the article</a></p>\r\n'
        b"<script>alert(1)</script>\r\n"
        b"--b1--\r\n")


# The click endpoint caches each message's links per process, by message id: ids come again
# after a rollback or flush, so a test starts and ends with an empty cache.
@pytest.fixture(autouse=True)
def _fresh_link_cache():
    forget_links()
    yield
    forget_links()


def signed_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def make_message(owner, raw: bytes = HTML, recipients=("a@example.org",), *, login=None,
                 mail_from="app@example.com", kind="submission", features=None, tags=(),
                 state=S.QUEUED, **fields) -> Message:
    message = Message.objects.create(
        owner=owner, login=login, kind=kind, mail_from=mail_from, raw=raw, size=len(raw),
        subject=subject_of(raw), features=features or {}, tags=list(tags),
        client_ip="192.0.2.7", helo="app.example.com", tls_version="TLSv1.3", **fields)
    for address in recipients:
        Recipient.objects.create(message=message, address=address, state=state,
                                 next_attempt_at=timezone.now() - timedelta(seconds=1))
    return message


def deliver(message: Message, outcome="delivered", capture=False, **reply) -> None:
    """Claim the message's due recipients and record an outcome for each, as delivery does."""
    claims = [c for c in queue.claim("w1", 1000) if c.message_id == message.pk]
    reply = {"code": 250, "enhanced": "2.0.0", "text": "ok", **reply}
    results = []
    for c in claims:
        data = queue.load_message(message.pk).raw if capture else None
        results.append(Result(c.recipient_id, outcome, host="mx.example.org", ip="192.0.2.25",
                              port=25, tls_version="TLSv1.3", tls_cipher="TLS_AES_256_GCM_SHA384",
                              duration_ms=42, mail_from=message.mail_from, capture=data,
                              **reply))
    queue.record_results("w1", results)


@pytest.fixture
def alice_client(alice):
    return signed_in(alice)


@pytest.fixture
def bob_client(bob):
    return signed_in(bob)


@pytest.fixture
def staff_client(staff):
    return signed_in(staff)


def listed(response) -> list[str]:
    assert response.status_code == 200, response.content[:2000]
    return re.findall(r'data-queue-id="([0-9A-F]+)"', response.content.decode())


# -- Messages: who sees what, search, pages ---------------------------------------------------


def test_a_customer_sees_their_own_messages_and_staff_see_everyone_s(
        alice, bob, alice_client, bob_client, staff_client):
    mine = make_message(alice)
    theirs = make_message(bob, b"Subject: bob's\r\n\r\nx\r\n")
    assert listed(alice_client.get("/messages/")) == [mine.queue_id]
    assert listed(bob_client.get("/messages/")) == [theirs.queue_id]
    page = staff_client.get("/messages/")
    assert set(listed(page)) == {mine.queue_id, theirs.queue_id}
    assert "<th scope=\"col\">Customer</th>" in page.content.decode()
    # The subject is shown decoded (RFC 2047), the state of each recipient summed up.
    html = alice_client.get("/messages/").content.decode()
    assert "Grüße from the shop" in html and 'data-state="queued">1 queued' in html


def test_intake_is_not_listed_for_customers_and_staff_can_ask_for_it(
        alice, alice_client, staff_client):
    sent = make_message(alice)
    intake = make_message(alice, b"Subject: bounce\r\n\r\nx\r\n", kind="bounce", state=S.INTAKE)
    assert listed(alice_client.get("/messages/")) == [sent.queue_id]
    assert listed(alice_client.get("/messages/?kind=intake")) == [sent.queue_id]  # ignored
    assert listed(staff_client.get("/messages/")) == [sent.queue_id]
    assert listed(staff_client.get("/messages/?kind=intake")) == [intake.queue_id]
    assert set(listed(staff_client.get("/messages/?kind=all"))) == {sent.queue_id,
                                                                     intake.queue_id}


def test_search_by_every_field(alice, bob, alice_client, staff_client):
    shop, _ = logins.create_login(alice, description="shop")
    news, _ = logins.create_login(alice, description="news")
    a = make_message(alice, recipients=["Jane@Example.org", "joe@example.net"], login=shop,
                     tags=["news", "café"])
    b = make_message(alice, b"Subject: Invoice 42\r\n\r\nx\r\n", recipients=["bill@corp.test"],
                     login=news, mail_from="billing@shop.test", tags=["invoices"])
    c = make_message(alice, b"Subject: old\r\n\r\nx\r\n", recipients=["old@example.org"])
    Message.objects.filter(pk=c.pk).update(received_at=timezone.now() - timedelta(days=10))
    deliver(b)
    bobs = make_message(bob, recipients=["jane@example.org"])

    def found(query: str, client=alice_client) -> set[str]:
        return set(listed(client.get("/messages/?" + query)))

    assert found("recipient=jane@example") == {a.queue_id}  # any case, part of the address
    assert found("recipient=example.org") == {a.queue_id, c.queue_id}
    assert found("sender=BILLING") == {b.queue_id}
    assert found("subject=grüße") == {a.queue_id}  # the decoded subject
    assert found("subject=invoice") == {b.queue_id}
    assert found(f"queue_id={a.queue_id}") == {a.queue_id}
    # A prefix, any case: the messages made in the same instant share all but the last
    # characters of their ids, so every one of alice's that starts so is found.
    prefix = a.queue_id[:-1]
    assert found(f"queue_id={prefix.lower()}") == {
        m.queue_id for m in (a, b, c) if m.queue_id.startswith(prefix)}
    assert found(f"login={news.username}") == {b.queue_id}
    assert found("tag=news") == {a.queue_id}
    assert found("tag=café") == {a.queue_id}
    assert found("tag=new") == set()  # a tag is matched whole
    assert found("status=delivered") == {b.queue_id}
    assert found("status=queued") == {a.queue_id, c.queue_id}
    today = timezone.localdate().isoformat()
    assert found(f"date_from={today}") == {a.queue_id, b.queue_id}
    old = (timezone.localdate() - timedelta(days=10)).isoformat()
    assert found(f"date_to={old}") == {c.queue_id}
    assert found("recipient=example.org&status=queued&tag=news") == {a.queue_id}
    # Staff search everyone, and by customer.
    assert found("recipient=jane@", staff_client) == {a.queue_id, bobs.queue_id}
    assert found("recipient=jane@&customer=BOB", staff_client) == {bobs.queue_id}
    assert found("customer=bob") == {a.queue_id, b.queue_id, c.queue_id}  # not for customers


def test_a_bad_search_is_400_with_the_reason(alice_client):
    response = alice_client.get("/messages/?date_from=2026-12-01&date_to=2026-11-01")
    assert response.status_code == 400
    assert "The end date is before the start date." in response.content.decode()
    assert alice_client.get("/messages/?status=nonsense").status_code == 400
    assert alice_client.get("/messages/?date_from=yesterday").status_code == 400


def test_fifty_messages_a_page_newest_first(alice, alice_client):
    now = timezone.now()
    made = Message.objects.bulk_create([
        Message(owner=alice, mail_from="app@example.com", raw=b"x", subject=f"n{i}")
        for i in range(120)])
    for i, m in enumerate(made):
        Message.objects.filter(pk=m.pk).update(received_at=now - timedelta(seconds=i))
    pages = [listed(alice_client.get(f"/messages/?page={n}")) for n in (1, 2, 3)]
    assert [len(p) for p in pages] == [50, 50, 20]
    assert sum(pages, []) == [m.queue_id for m in made]  # newest first, none twice
    html = alice_client.get("/messages/?subject=n&page=2").content.decode()
    assert "Page 2 of 3" in html and 'href="?subject=n&amp;page=3"' in html
    assert "120 messages" in html


# -- a message's page ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["", "raw/", "html/", "raw/?recipient={rid}",
                                  "html/?recipient={rid}", "?recipient={rid}"])
def test_another_customer_s_message_is_not_found(alice, bob_client, staff_client, path):
    message = make_message(alice, features={"clicktracking": True})
    deliver(message, capture=True)
    rid = message.recipients.get().pk
    url = f"/messages/{message.queue_id}/" + path.format(rid=rid)
    assert bob_client.get(url).status_code == 404
    assert bob_client.get(f"/messages/0000000000000000/{path.format(rid=rid)}").status_code \
        == 404
    assert staff_client.get(url).status_code == 200


def test_another_message_s_recipient_is_not_found(alice, alice_client):
    first, second = make_message(alice), make_message(alice)
    other = second.recipients.get().pk
    for path in ["", "html/", "raw/"]:
        response = alice_client.get(f"/messages/{first.queue_id}/{path}?recipient={other}")
        assert response.status_code == 404
    assert alice_client.get(f"/messages/{first.queue_id}/?recipient=x1").status_code == 404


def test_the_page_shows_envelope_features_recipients_attempts_and_timeline(
        alice, alice_client, settings):
    settings.DELIVERY_RETRY_FIRST, settings.BOUNCE_DOMAIN = 300, "bounces.test"
    login, _ = logins.create_login(alice)
    message = make_message(
        alice, recipients=["ok@example.org", "later@example.net", "no@example.com"],
        login=login, features={"clicktracking": True, "bouncetracking": True},
        tags=["news"], ret="HDRS", envid="Env-42")
    Recipient.objects.filter(address="later@example.net").update(notify="DELAY,FAILURE",
                                                                 orcpt="rfc822;Later@x.test")
    ok, later, no = message.recipients.order_by("id")
    claims = queue.claim("w1", 10)
    assert len(claims) == 3
    queue.record_results("w1", [
        Result(ok.pk, "delivered", 250, "2.0.0", "queued as 1234", host="mx.example.org",
               ip="192.0.2.25", port=25, tls_version="TLSv1.3",
               tls_cipher="TLS_AES_256_GCM_SHA384", duration_ms=42),
        Result(later.pk, "deferred", 451, "4.7.1", "greylisted, come back later",
               host="mx.example.net", ip="192.0.2.26", port=25, duration_ms=7),
        Result(no.pk, "failed", 550, "5.1.1", "no such user here", host="mx.example.com",
               ip="192.0.2.27", port=25, duration_ms=9),
    ])
    record(Event.Type.CLICK, message, ok, {"url": "https://example.com/article", "index": 0,
                                           "ip": "198.51.100.9"})
    record(Event.Type.WARNING, message, None, {"reason": "render passed RENDER_TIMEOUT (5 s)",
                                               "action": "sent unchanged"})
    dsn = Message.objects.create(owner=alice, mail_from="", raw=b"Subject: failed\r\n\r\nx",
                                 dsn_of=message, subject="Delivery Status Notification")
    Recipient.objects.create(message=dsn, address="app@example.com")

    html = alice_client.get(f"/messages/{message.queue_id}/").content.decode()
    # Envelope as received, and as sent: one VERP address per recipient (bouncetracking).
    assert "&lt;app@example.com&gt;</code> RET=HDRS ENVID=<code>Env-42</code>" in html
    assert "one VERP address per recipient" in html
    assert len(set(re.findall(r"&lt;([^&]+@bounces\.test)&gt;", html))) == 3
    assert re.search(r'data-feature="clicktracking"[^>]*title="Click tracking: on"', html)
    assert re.search(r'data-feature="inlinecss"[^>]*title="Inline CSS: off"', html)
    assert "Grüße from the shop" in html and '<span class="tag">news</span>' in html
    # Every recipient with its state and why.
    rows = dict(re.findall(r'data-address="([^"]+)" data-state="(\w+)"', html))
    assert rows == {"ok@example.org": "delivered", "later@example.net": "deferred",
                    "no@example.com": "failed"}
    assert "NOTIFY=DELAY,FAILURE ORCPT=rfc822;Later@x.test" in html
    assert "451 4.7.1 greylisted, come back later" in html
    next_at = Recipient.objects.get(pk=later.pk).next_attempt_at
    assert f'next attempt <time datetime="{next_at.isoformat()}' in html
    assert "550 5.1.1 no such user here" in html
    # Each attempt with the server's reply.
    assert html.count('class="attempt-row') == 3
    assert "mx.example.org <span class=\"muted\">[192.0.2.25]:25</span>" in html
    assert "TLSv1.3 <span class=\"muted small\">TLS_AES_256_GCM_SHA384</span>" in html
    assert "42 ms" in html
    # The timeline, in order: queued, attempts with their outcomes, click, warning, the DSN.
    kinds = re.findall(r'<li class="tl tl-\w+" data-kind="(\w+)"', html)
    assert kinds[0] == "queued"
    assert kinds.count("attempt") == 3
    assert {"delivery", "deferral", "failure", "click", "warning", "dsn_message"} <= set(kinds)
    assert kinds.index("click") > kinds.index("delivery")
    assert "https://example.com/article" in html
    assert "render passed RENDER_TIMEOUT (5 s)" in html
    assert f'href="/messages/{dsn.queue_id}/"' in html
    # The DSN links back to its message.
    dsn_html = alice_client.get(f"/messages/{dsn.queue_id}/").content.decode()
    assert f'a DSN about <a href="/messages/{message.queue_id}/">' in dsn_html


def test_an_expired_recipient_says_why(alice, alice_client, settings):
    settings.DELIVERY_MAX_LIFETIME = 0
    message = make_message(alice)
    deliver(message, "deferred", code=451, enhanced="4.4.1", text="connection timed out")
    html = alice_client.get(f"/messages/{message.queue_id}/").content.decode()
    assert 'data-state="failed"' in html
    assert "5.4.7 Delivery time expired; last reply: 451 4.4.1 connection timed out" in html
    assert "<strong>Expired</strong>" in html


def test_the_page_of_a_message_with_many_recipients_shows_some_and_finds_any(
        alice, alice_client):
    message = make_message(alice, recipients=[f"r{i}@example.org" for i in range(150)])
    html = alice_client.get(f"/messages/{message.queue_id}/").content.decode()
    assert html.count('class="recipient-row"') == 100
    assert "Showing 100 of 150." in html and 'data-state="queued">150 queued' in html
    html = alice_client.get(f"/messages/{message.queue_id}/?rcpt=r14").content.decode()
    assert re.findall(r'data-address="([^"]+)"', html) == [
        "r14@example.org", *(f"r{i}@example.org" for i in range(140, 150))]


# -- raw source and HTML as delivered ------------------------------------------------------


def test_the_raw_source_downloads_as_received(alice, alice_client):
    message = make_message(alice)
    response = alice_client.get(f"/messages/{message.queue_id}/raw/")
    assert response.status_code == 200
    assert response["Content-Type"] == "message/rfc822"
    assert response["Content-Disposition"] == f'attachment; filename="{message.queue_id}.eml"'
    assert response["Content-Security-Policy"] == "sandbox; default-src 'none'"
    assert response.content == HTML
    # No captured copy of a recipient that was not captured.
    rid = message.recipients.get().pk
    assert alice_client.get(f"/messages/{message.queue_id}/raw/?recipient={rid}").status_code \
        == 404


def test_a_captured_copy_is_shown_and_downloads_as_captured(alice, alice_client, client):
    message = make_message(alice, features={"clicktracking": True}, tags=["news"])
    rid = message.recipients.get().pk
    claims = queue.claim("w1", 10)
    data = render_for(message, Recipient.objects.get(pk=rid)).message
    queue.deliver_ok("w1", [Result(c.recipient_id, "", 250, "2.0.0", "captured",
                                   host="capture", capture=data) for c in claims])
    response = alice_client.get(f"/messages/{message.queue_id}/raw/?recipient={rid}")
    assert response.content == data and b"X-SMTPeter-Tags" not in data
    assert response["Content-Disposition"] == \
        f'attachment; filename="{message.queue_id}-{rid}.eml"'

    page = alice_client.get(f"/messages/{message.queue_id}/").content.decode()
    assert "The bytes captured for this recipient" in page
    assert (f'src="/messages/{message.queue_id}/html/?recipient={rid}"') in page
    frame = alice_client.get(f"/messages/{message.queue_id}/html/?recipient={rid}")
    assert frame["Content-Security-Policy"] == HTML_POLICY
    assert frame["X-Frame-Options"] == "SAMEORIGIN"
    assert frame["Content-Type"] == "text/html; charset=utf-8"
    body = frame.content.decode()
    assert "<p>Café <a href=" in body  # quoted-printable and iso-8859-1 undone
    # The tracked link in the captured copy is the recipient's: a click counts.
    link = re.search(r'href="(http://[^"]+/t/c/[^"]+)"', body).group(1)
    path = "/t/" + link.split("/t/", 1)[1]
    assert client.get(path).status_code == 302
    page = alice_client.get(f"/messages/{message.queue_id}/").content.decode()
    assert 'data-kind="click"' in page


def test_a_message_not_captured_is_rendered_with_links_that_count_nothing(
        alice, alice_client, client):
    message = make_message(alice, features={"clicktracking": True})
    deliver(message)
    frame = alice_client.get(f"/messages/{message.queue_id}/html/")
    body = frame.content.decode()
    assert "https://example.com/article" not in body and "Café" in body
    link = re.search(r'href="(http://[^"]+/t/c/[^"]+)"', body).group(1)
    assert client.get("/t/" + link.split("/t/", 1)[1]).status_code == 404
    assert not Event.objects.filter(type=Event.Type.CLICK).exists()
    page = alice_client.get(f"/messages/{message.queue_id}/").content.decode()
    assert "tracking links name no recipient" in page


def test_a_message_without_html_shows_its_text_and_has_no_frame(alice, alice_client):
    message = make_message(alice, b"Subject: plain\r\n\r\nHello <b>there</b>\r\n")
    page = alice_client.get(f"/messages/{message.queue_id}/").content.decode()
    assert '<pre class="mail-text" id="mail-text">Hello &lt;b&gt;there&lt;/b&gt;' in page
    assert "<iframe" not in page
    assert alice_client.get(f"/messages/{message.queue_id}/html/").status_code == 404


def test_the_pages_hold_no_inline_script_or_style(alice, alice_client, staff_client):
    message = make_message(alice)
    deliver(message, capture=True)
    pending = make_message(alice)
    pages = [alice_client.get(u) for u in [
        "/messages/", f"/messages/{message.queue_id}/", "/outbox/", "/messages/?subject=zz"]]
    pages += [staff_client.get(f"/messages/{pending.queue_id}/"),
              staff_client.get(f"/messages/{pending.queue_id}/delete/")]
    for response in pages:
        html = response.content.decode()
        assert response.status_code == 200
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), response.request["PATH_INFO"]
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html), response.request["PATH_INFO"]


# -- the Outbox -----------------------------------------------------------------------------


def test_the_outbox_lists_captured_copies_newest_first(alice, bob, alice_client, staff_client,
                                                       settings):
    first = make_message(alice, recipients=["a@example.org", "b@example.org"])
    deliver(first, capture=True)
    second = make_message(alice, b"Subject: second\r\n\r\nx\r\n")
    deliver(second, capture=True)
    Capture.objects.filter(message=second).update(time=timezone.now() + timedelta(seconds=5))
    bobs = make_message(bob)
    deliver(bobs, capture=True)
    not_captured = make_message(alice)
    deliver(not_captured)

    html = alice_client.get("/outbox/").content.decode()
    assert re.findall(r'data-queue-id="([0-9A-F]+)"', html) == [
        second.queue_id, first.queue_id, first.queue_id]
    rid = second.recipients.get().pk
    assert f'href="/messages/{second.queue_id}/?recipient={rid}#as-delivered"' in html
    assert "3 captured copies" in html
    assert len(re.findall(r'class="capture-row"',
                          staff_client.get("/outbox/").content.decode())) == 4

    settings.DELIVERY_MODE = "mx"
    assert 'href="/outbox/"' not in alice_client.get("/messages/").content.decode()
    settings.DELIVERY_MODE = "capture"
    assert 'href="/outbox/"' in alice_client.get("/messages/").content.decode()


# -- staff actions ------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["retry", "hold", "release", "delete"])
def test_staff_actions_are_not_found_for_customers_even_the_owner(
        alice, alice_client, bob_client, action):
    message = make_message(alice, state=S.HELD if action == "release" else S.QUEUED)
    for client in (alice_client, bob_client):
        for method in ("get", "post"):
            response = getattr(client, method)(f"/messages/{message.queue_id}/{action}/")
            assert response.status_code == 404
    assert Message.objects.filter(pk=message.pk).exists()
    assert message.recipients.get().state == (S.HELD if action == "release" else S.QUEUED)
    assert not QueueAudit.objects.exists()
    page = alice_client.get(f"/messages/{message.queue_id}/").content.decode()
    assert "staff-actions" not in page


def test_staff_actions_take_post_with_csrf_only(alice, staff):
    message = make_message(alice)
    client = signed_in(staff, enforce_csrf_checks=True)
    assert client.get(f"/messages/{message.queue_id}/hold/").status_code == 405
    assert client.post(f"/messages/{message.queue_id}/hold/").status_code == 403
    assert client.post(f"/messages/{message.queue_id}/delete/").status_code == 403
    assert message.recipients.get().state == S.QUEUED and not QueueAudit.objects.exists()
    page = client.get(f"/messages/{message.queue_id}/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(f"/messages/{message.queue_id}/hold/",
                           {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert message.recipients.get().state == S.HELD


def test_staff_hold_release_retry_and_delete_are_audited(alice, staff, staff_client):
    message = make_message(alice, recipients=["a@example.org", "b@example.org"])
    Recipient.objects.filter(message=message).update(
        next_attempt_at=timezone.now() + timedelta(hours=1))
    url = f"/messages/{message.queue_id}/"
    page = staff_client.get(url).content.decode()
    for label in ("Retry now", "Hold", "Delete…"):
        assert label in page
    assert "Release</button>" not in page

    response = staff_client.post(url + "retry/")
    assert response.status_code == 302 and response["Location"] == url
    assert all(r.next_attempt_at <= timezone.now() for r in message.recipients.all())
    staff_client.post(url + "hold/")
    assert set(message.recipients.values_list("state", flat=True)) == {S.HELD}
    page = staff_client.get(url).content.decode()
    assert "held by auditor at" in page and "Release</button>" in page
    assert "Retry now</button>" not in page
    staff_client.post(url + "release/")
    assert set(message.recipients.values_list("state", flat=True)) == {S.QUEUED}
    # Nothing to do says so, and writes no audit entry.
    staff_client.post(url + "release/")
    assert "Nothing to do" in staff_client.get(url).content.decode()

    entries = list(QueueAudit.objects.order_by("id").values_list("action", "actor_name",
                                                                 "queue_id"))
    assert entries == [(a, "auditor", message.queue_id) for a in ("retry", "hold", "release")]
    kinds = re.findall(r'data-kind="(\w+)"', staff_client.get(url).content.decode())
    assert kinds.count("audit") == 3

    confirm = staff_client.get(url + "delete/")
    assert "Delete message" in confirm.content.decode()
    response = staff_client.post(url + "delete/")
    assert response.status_code == 302 and response["Location"] == "/messages/"
    assert not Message.objects.filter(pk=message.pk).exists()
    entry = QueueAudit.objects.get(action="delete")
    assert (entry.actor_name, entry.queue_id, entry.recipients) == (
        "auditor", message.queue_id, ["a@example.org", "b@example.org"])
    assert staff_client.get(url).status_code == 404


def test_delivered_mail_is_not_deleted_from_the_dashboard(alice, staff_client):
    message = make_message(alice)
    deliver(message)
    url = f"/messages/{message.queue_id}/"
    assert "staff-actions" not in staff_client.get(url).content.decode()
    response = staff_client.post(url + "delete/")
    assert response.status_code == 302 and response["Location"] == url
    assert Message.objects.filter(pk=message.pk).exists()
    assert not QueueAudit.objects.exists()
    assert "kept as the record" in staff_client.get(url).content.decode()


def test_an_attempt_count_and_nothing_else_without_attempts(alice, alice_client):
    message = make_message(alice)
    html = alice_client.get(f"/messages/{message.queue_id}/").content.decode()
    assert 'id="no-attempts"' in html and "waiting for its first attempt" in html
    assert not Attempt.objects.exists()
