"""The preview page in a real browser (Debian's chromium through Playwright)."""
import pytest
from django.test import Client

from credentials.services import create_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
CHROMIUM = "/usr/bin/chromium"
MESSAGE = (
    "From: a@example.com\nTo: b@example.org\nSubject: hi\n"
    "Content-Type: text/html; charset=utf-8\n\n"
    '<html><body><p><a href="https://example.com/?a=1&amp;b=2">Go</a> '
    '<a href="https://example.com/">example.com</a></p></body></html>\n'
)


def test_a_customer_previews_a_message_in_the_browser(live_server, alice, bob):
    sync_api = pytest.importorskip("playwright.sync_api")
    mine, _ = create_login(alice, features=["clicktracking", "openstracking", "preventscam"])
    theirs, _ = create_login(bob, features=["clicktracking"])
    # The session-wide live server built its middleware before the test settings turned the
    # https redirect off; build it again so it serves plain http on loopback.
    handler = live_server.thread.httpd.get_app()
    getattr(handler, "application", handler).load_middleware()
    client = Client()
    client.force_login(alice)
    session = client.cookies["sessionid"].value
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable"])
        try:
            context = browser.new_context()
            context.add_cookies([{"name": "sessionid", "value": session,
                                  "url": live_server.url}])
            page = context.new_page()
            page.goto(f"{live_server.url}/preview/")
            options = page.locator("select[name=login] option").all_inner_texts()
            assert any(mine.username in o for o in options)
            assert not any(theirs.username in o for o in options)
            page.fill("textarea[name=message]", MESSAGE)
            page.fill("input[name=rcpt]", "reader@example.org")
            page.click("button[type=submit]")
            page.wait_for_selector("#result")
            summary = page.inner_text("#summary")
            assert "links rewritten: 1" in summary
            assert "links left alone by preventscam: 1" in summary
            assert "tracking pixel inserted: 1" in summary
            rendered = page.inner_text("#rendered")
            assert "/t/c/" in rendered and "/t/o/" in rendered
            assert 'href="https://example.com/"' in rendered
        finally:
            browser.close()
