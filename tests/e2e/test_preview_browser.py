"""The preview page in a real browser (Debian's chromium through Playwright)."""
import os

import pytest

from credentials.services import create_login

# Playwright's sync API runs an event loop in this thread; the ORM calls here are synchronous.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
MESSAGE = (
    "From: a@example.com\nTo: b@example.org\nSubject: hi\n"
    "Content-Type: text/html; charset=utf-8\n\n"
    '<html><body><p><a href="https://example.com/?a=1&amp;b=2">Go</a> '
    '<a href="https://example.com/">example.com</a></p></body></html>\n'
)


def test_a_customer_previews_a_message_in_the_browser(
    browser, live_server, plain_http, alice, bob
):
    mine, _ = create_login(alice, features=["clicktracking", "openstracking", "preventscam"])
    theirs, _ = create_login(bob, features=["clicktracking"])
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{live_server.url}/signin/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-pw-1234!")
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{live_server.url}/")

    page.goto(f"{live_server.url}/preview/")
    options = page.locator("select[name=login] option").all_inner_texts()
    assert any(mine.username in o for o in options)
    assert not any(theirs.username in o for o in options)
    page.fill("textarea[name=message]", MESSAGE)
    page.fill("input[name=rcpt]", "reader@example.org")
    page.click("button:has-text('Render')")
    page.wait_for_selector("#result")
    summary = page.inner_text("#summary")
    assert "links rewritten: 1" in summary
    assert "links left alone by preventscam: 1" in summary
    assert "tracking pixel inserted: 1" in summary
    rendered = page.inner_text("#rendered")
    assert "/t/c/" in rendered and "/t/o/" in rendered
    assert 'href="https://example.com/"' in rendered
    context.close()
