"""The Statistics page in a real Chromium: the server-drawn chart and the totals for known
events, the machine-flagged toggle, a login and a tag chosen in the form, under the site's
Content-Security-Policy with nothing fetched from elsewhere; another customer's login is "not
found". Also the raw report behind a bounce, one click from the owner's Bounces page."""
import os
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from credentials import services as logins
from events import stats
from events.models import Event
from relay import intake
from relay.models import Message, Recipient
from tests.e2e.test_dashboard_browser import sign_in
from tests.relay import intake_samples

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""


@pytest.fixture(autouse=True)
def _fresh_counts():
    stats.forget_live()
    yield
    stats.forget_live()


def _events(alice):
    """Two days ago: 2 recipients of a 'promo' message via login A, one opened twice (and a
    scanner once), one clicked; yesterday: 1 recipient via login B, delivered."""
    a, _ = logins.create_login(alice, description="promo")
    b, _ = logins.create_login(alice, description="receipts")
    day2 = timezone.now() - timedelta(days=2)
    day1 = timezone.now() - timedelta(days=1)
    m1 = Message.objects.create(owner=alice, login=a, tags=["promo"], raw=b"x")
    m2 = Message.objects.create(owner=alice, login=b, tags=[], raw=b"x")
    Message.objects.filter(pk=m1.pk).update(received_at=day2)
    Message.objects.filter(pk=m2.pk).update(received_at=day1)
    r1 = Recipient.objects.create(message=m1, address="one@example.org", state="delivered")
    r2 = Recipient.objects.create(message=m1, address="two@example.org", state="delivered")
    r3 = Recipient.objects.create(message=m2, address="three@example.org", state="delivered")
    made = [("delivery", m1, r1, day2, {}, []), ("delivery", m1, r2, day2, {}, []),
            ("open", m1, r1, day2, {}, []), ("open", m1, r1, day2, {}, []),
            ("open", m1, r2, day2, {}, ["scanner"]),
            ("click", m1, r2, day2, {"url": "https://shop.example/sale"}, []),
            ("delivery", m2, r3, day1, {}, [])]
    for type_, m, r, at, data, flags in made:
        e = Event.objects.create(type=type_, message=m, recipient=r, data=data, flags=flags)
        Event.objects.filter(pk=e.pk).update(time=at)
    return a, b


def test_the_statistics_page_in_a_browser(browser, live_server, plain_http, alice, bob):
    login_a, login_b = _events(alice)
    base = live_server.url
    context = browser.new_context()
    page = context.new_page()
    page.add_init_script(WATCH)
    foreign = []
    page.on("request", lambda r: foreign.append(r.url) if not r.url.startswith(base) else None)
    sign_in(page, base, "alice", "alice-pw-1234!")
    page.click("nav >> text=Statistics")
    page.wait_for_url(f"{base}/stats/")
    assert page.locator("#total-sent").inner_text() == "3"
    assert page.locator("#total-delivered").inner_text() == "3"
    assert page.locator("#total-opened").inner_text() == "2"
    assert page.locator("#unique-opened").inner_text() == "1"
    assert page.locator("#total-clicked").inner_text() == "1"
    chart = page.locator("svg.chart")
    assert chart.is_visible()
    assert chart.locator("g.series").count() == 7
    # The chart's series are drawn in their colours from site.css (no inline style).
    stroke = page.eval_on_selector("g.series-delivered polyline",
                                   "e => getComputedStyle(e).stroke")
    assert stroke == "rgb(23, 128, 61)"
    assert "https://shop.example/sale" in page.locator("#stats-links").inner_text()

    page.check("#id_machine")
    page.click("button:has-text('Show')")
    page.wait_for_url("**/stats/?*machine=on*")
    assert page.locator("#total-opened").inner_text() == "3"
    assert page.locator("#unique-opened").inner_text() == "2"

    page.uncheck("#id_machine")
    page.select_option("#id_login", str(login_b.pk))
    page.click("button:has-text('Show')")
    page.wait_for_url(f"**/stats/?*login={login_b.pk}*")
    assert page.locator("#total-sent").inner_text() == "1"
    assert page.locator("#total-opened").inner_text() == "0"
    assert page.locator("#no-links").is_visible()

    page.select_option("#id_login", "")
    page.fill("#id_tag", "promo")
    page.click("button:has-text('Show')")
    page.wait_for_url("**/stats/?*tag=promo*")
    assert page.locator("#total-sent").inner_text() == "2"

    assert page.evaluate("window.__violations") == []
    assert foreign == []
    context.close()

    # Bob: Alice's login is not found; Alice's tag shows nothing of hers.
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, base, "bob", "bob-pw-1234!")
    response = page.goto(f"{base}/stats/?login={login_a.pk}")
    assert response.status == 404
    page.goto(f"{base}/stats/?tag=promo")
    assert page.locator("#total-sent").inner_text() == "0"
    assert "shop.example" not in page.content()
    context.close()


def test_the_raw_report_is_one_click_from_the_bounces_page(browser, live_server, plain_http,
                                                           alice):
    from features.tokens import verp_address
    from smtpeter_site.keys import key_for

    message = Message.objects.create(owner=alice, mail_from="app@example.com", raw=b"x")
    recipient = Recipient.objects.create(message=message, address="gone@remote.test",
                                         state="delivered")
    verp = verp_address(key_for("verp"), message.pk, recipient.pk, settings.BOUNCE_DOMAIN)
    raw = intake_samples.dsn(verp, recipient.address)
    report = Message.objects.create(kind="bounce", mail_from="", raw=raw)
    Recipient.objects.create(message=report, address=verp, state="intake")
    assert intake.process_one(report.pk) == "bounce"
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    sign_in(page, live_server.url, "alice", "alice-pw-1234!")
    page.goto(f"{live_server.url}/bounces/")
    with page.expect_download() as download:
        page.click("a:has-text('raw report')")
    path = download.value.path()
    with open(path, "rb") as f:
        assert f.read() == raw
    assert download.value.suggested_filename == f"{report.queue_id}.eml"
    context.close()
