"""The newcomer's path in a real Chromium: mail sent with swaks-like SMTP to a real runsmtp in
capture mode lands in the Outbox; its page shows the timeline and the HTML as delivered in a
sandboxed frame (no script runs, nothing is loaded); a click on the tracked link there is on
the timeline after a reload. The pages run under the site's strict Content-Security-Policy."""
import os
import re
import smtplib
import time

import pytest
from django.db import connection

from credentials import services
from events.models import Event
from features.services import forget_links
from relay.models import Capture, Message
from relay.tls import write_self_signed
from tests.relay.conftest import SERVER_ENV
from tests.relay.smtp_helpers import HOST, Server

# Playwright's sync API runs an event loop in this thread; the ORM calls here are synchronous.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The dashboard's policy (smtpeter_site/csp.py): no inline script or style, nothing from
# elsewhere. Added here to every dashboard answer that has none, so these pages are checked
# under it whether or not the middleware is installed.
POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
          "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""


# The click endpoint caches each message's links per process, by message id: ids come again
# after a rollback or flush, so a test starts and ends with an empty cache.
@pytest.fixture(autouse=True)
def _fresh_link_cache():
    forget_links()
    yield
    forget_links()


def html_mail(image_url: str) -> bytes:
    return (
        "Subject: Your order has shipped\r\nX-SMTPeter-Tags: orders\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n"
        "<html><head><style>p { color: #123456 }</style></head><body>\r\n"
        '<p id="greeting">Hello! <a id="track-me" href="https://example.com/order/42">'
        "Track your parcel</a></p>\r\n"
        f'<img id="remote" src="{image_url}" alt="logo">\r\n'
        '<script>document.body.insertAdjacentHTML("beforeend", "<p id=ran>ran</p>")</script>\r\n'
        "</body></html>\r\n"
    ).encode()


@pytest.fixture(scope="module")
def capture_server(live_server, django_db_blocker, tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    write_self_signed(d / "cert.pem", d / "key.pem", ["relay.test", "localhost", "127.0.0.1"])
    with django_db_blocker.unblock():
        connection.ensure_connection()
    server = Server(cert=d / "cert.pem", key=d / "key.pem",
                    workdir=tmp_path_factory.mktemp("runsmtp"),
                    env_extra={**SERVER_ENV, "DELIVERY_MODE": "capture",
                               "TRACKING_BASE_URL": f"{live_server.url}/t/"}).start()
    yield server
    server.stop()
    log = server.log_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]


def wait_for(check, timeout: float = 30, what: str = "condition", page=None):
    """Poll check(); with a page, wait in Playwright so that it goes on serving its routes."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        if page is not None:
            page.wait_for_timeout(100)
        else:
            time.sleep(0.1)
    return value


def with_policy(route) -> None:
    response = route.fetch(max_redirects=0)
    headers = dict(response.headers)
    headers.setdefault("content-security-policy", POLICY)
    route.fulfill(response=response, headers=headers)


def test_sent_mail_in_the_outbox_with_its_timeline_frame_and_a_recorded_click(
        browser, live_server, capture_server, plain_http, settings, alice):
    settings.DELIVERY_MODE = "capture"  # the web app's own setting: the nav shows the Outbox
    base = live_server.url
    login, password = services.create_login(alice, features=["clicktracking",
                                                             "bouncetracking"])
    image = f"{base}/static/css/site.css?as-image"
    with smtplib.SMTP_SSL(HOST, capture_server.tls_port,
                          context=capture_server.client_context()) as smtp:
        smtp.login(login.username, password)
        smtp.sendmail("shop@example.com", ["buyer@example.org"], html_mail(image))
    capture = wait_for(lambda: Capture.objects.select_related("message").first(),
                       what="the capture")
    message = capture.message

    context = browser.new_context()
    context.add_init_script(WATCH)
    context.route(f"{base}/**", with_policy)
    page = context.new_page()
    problems: list[str] = []
    fetched: list[str] = []
    refused: list[tuple[str, str]] = []
    in_mail: list[str] = []  # what the browser refused the mail's own HTML

    def console(m) -> None:
        where = m.location.get("url", "")
        if m.type != "error" or where.endswith("/favicon.ico"):
            return
        if "/html/" in where or "/html/" in m.text:
            in_mail.append(m.text)
        else:
            problems.append(f"{page.url}: {m.text}")

    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    # Chromium reports a request the policy stops as one that failed with "csp".
    page.on("requestfinished", lambda r: fetched.append(r.url))
    page.on("requestfailed", lambda r: refused.append((r.url, r.failure)))

    page.goto(f"{base}/signin/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-pw-1234!")
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{base}/")

    page.click("nav a:has-text('Outbox')")
    page.wait_for_url(f"{base}/outbox/")
    row = page.locator(f"tr.capture-row[data-queue-id='{message.queue_id}']")
    assert "buyer@example.org" in row.inner_text()
    assert re.search(r"<[^>]+@bounces\.test>", row.inner_text())  # VERP, as sent
    row.locator("a:has-text('Your order has shipped')").click()
    page.wait_for_url(re.compile(rf"/messages/{message.queue_id}/\?recipient=\d+"))

    assert page.locator("h1#subject").inner_text() == "Your order has shipped"
    timeline = page.locator("#timeline li")
    kinds = [timeline.nth(i).get_attribute("data-kind") for i in range(timeline.count())]
    # The From domain is not a verified sender domain: signed as the relay, and it says so.
    assert kinds[:4] == ["queued", "warning", "attempt", "delivery"]
    assert "captured in the Outbox" in page.locator("#timeline").inner_text()
    assert page.locator("tr.recipient-row[data-state='delivered']").count() == 1

    # The HTML as delivered: shown with its own inline styles, its link rewritten, its script
    # not run, its image not fetched.
    frame = page.frame_locator("#mail-frame")
    frame.locator("#greeting").wait_for()
    link = frame.locator("#track-me")
    assert link.get_attribute("href").startswith(f"{base}/t/c/")
    assert frame.locator("#ran").count() == 0
    page.wait_for_load_state("load")
    assert not [u for u in fetched if "as-image" in u]
    assert (image, "csp") in refused
    assert page.evaluate("getComputedStyle(document.querySelector('.topbar')).display") \
        != "inline"  # the site's stylesheet applies under the policy
    problems += [f"CSP {v}" for v in page.evaluate("window.__violations")]
    assert problems == []
    assert any("img-src 'none'" in m and "as-image" in m for m in in_mail), in_mail
    assert any("sandboxed and the 'allow-scripts' permission is not set" in m
               for m in in_mail), in_mail

    # The source downloads as the .eml it was received as.
    with page.expect_download() as download:
        page.click("#download-raw")
    assert download.value.suggested_filename == f"{message.queue_id}.eml"

    # A click on the tracked link is the recipient's click: on the timeline after a reload.
    link.click(no_wait_after=True)
    wait_for(lambda: Event.objects.filter(type=Event.Type.CLICK, message=message).exists(),
             timeout=15, what="the click event", page=page)
    page.reload()
    clicked = page.locator("#timeline li[data-kind='click']")
    assert clicked.count() == 1
    assert "https://example.com/order/42" in clicked.inner_text()
    assert Message.objects.count() == 1
    context.unroute_all(behavior="ignoreErrors")
    context.close()
