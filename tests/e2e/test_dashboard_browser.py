"""A real Chromium drives the dashboard against the live server: a customer creates a login,
sees its password once, changes a feature; staff then find the change in the audit log."""
import os
import re

import pytest
from django.contrib.sessions.models import Session

from credentials import services
from credentials.models import Login

# Playwright's sync API runs an event loop in this thread; the ORM calls here are synchronous.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_in(page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/signin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{base_url}/")


def feature_states(row) -> dict[str, str]:
    cells = row.locator("td.feature-cell")
    return {
        cells.nth(i).get_attribute("data-feature"): cells.nth(i).inner_text().strip()
        for i in range(cells.count())
    }


def test_customer_creates_login_and_staff_sees_the_change(
    browser, live_server, plain_http, alice, staff
):
    base = live_server.url
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    sign_in(page, base, "alice", "alice-pw-1234!")
    assert page.locator("h2:has-text('No logins yet')").is_visible()

    page.click("a:has-text('New login')")
    page.fill("#id_description", "shop orders")
    page.check("#id_clicktracking")
    page.check("#id_inlinecss")
    page.click("button:has-text('Create login')")

    # The password, exactly once, in the answer to the POST (its URL is the form's URL), with a
    # copy button that really copies it.
    assert page.url == f"{base}/logins/new/"
    password = page.locator("#new-password").inner_text().strip()
    username = page.locator("#new-username").inner_text().strip()
    assert len(password) >= 24
    login = Login.objects.get(username=username)
    assert services.authenticate(username, password) == login
    page.click("button[data-copy='#new-password']")
    assert page.evaluate("navigator.clipboard.readText()") == password
    assert page.locator(".message-success").inner_text() == f"Login {username} created."
    # Not in any session row: the server keeps it nowhere.
    assert not [s for s in Session.objects.all() if password in repr(s.get_decoded())]

    # A reload re-sends the form: no second login, no password, a message that says why.
    page.reload()
    page.wait_for_url(f"{base}/")
    assert password not in page.content()
    assert "sent already" in page.locator(".messages").inner_text()
    assert Login.objects.filter(owner=alice).count() == 1

    # Back (no-store: no cached copy) and a GET of the URL show no password either.
    page.go_back()
    assert password not in page.content()
    page.goto(f"{base}/logins/new/")
    assert page.locator("#new-password").count() == 0
    assert password not in page.content()
    page.goto(f"{base}/")

    row = page.locator(f"#login-{login.pk}")
    assert feature_states(row) == {"clicktracking": "on", "openstracking": "off",
                                   "preventscam": "off", "bouncetracking": "off",
                                   "inlinecss": "on"}

    # Toggle one feature off and one on.
    row.locator("a:has-text('Edit')").click()
    assert page.is_checked("#id_inlinecss")
    page.uncheck("#id_inlinecss")
    page.check("#id_openstracking")
    page.click("button:has-text('Save changes')")
    page.wait_for_url(f"{base}/")
    assert page.locator(".message-success").inner_text() == f"Login {username} saved."
    assert feature_states(page.locator(f"#login-{login.pk}")) == {
        "clicktracking": "on", "openstracking": "on", "preventscam": "off",
        "bouncetracking": "off", "inlinecss": "off"}

    # Customers have no Audit link and the area is not found for them.
    assert page.locator("nav.nav a:has-text('Audit')").count() == 0
    assert page.goto(f"{base}/audit/log/").status == 404

    page.goto(f"{base}/")
    page.click("details.account summary")
    page.click("button:has-text('Sign out')")
    page.wait_for_url(f"{base}/signin/")
    assert "You are signed out." in page.content()

    sign_in(page, base, "auditor", "auditor-pw-1234!")
    page.click("nav.nav a:has-text('Audit')")
    page.click("nav.tabs a:has-text('Audit log')")
    change = page.locator("tr.audit-entry[data-action='features_changed']")
    assert change.count() == 1
    text = change.inner_text()
    assert username in text and "alice" in text
    assert re.search(r"Open tracking:\s*off\s*→\s*on", text)
    assert re.search(r"Inline CSS:\s*on\s*→\s*off", text)
    assert "127.0.0.1" in text
    assert page.locator("tr.audit-entry[data-action='created']").count() == 1
    context.close()


def test_logins_page_fits_a_phone_screen(browser, live_server, plain_http, alice):
    for i in range(3):
        services.create_login(alice, features=["clicktracking"], description=f"app {i}")
    services.create_login(alice, description="x" * 200)  # one long word must wrap, not overflow
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    page = context.new_page()
    sign_in(page, live_server.url, "alice", "alice-pw-1234!")
    # No sideways scrolling: the table turns into one card per login.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert not page.locator("table.logins-table thead").is_visible()
    assert page.locator("td.feature-cell[data-feature='clicktracking']").first.is_visible()
    assert page.locator("a:has-text('New login')").is_visible()
    context.close()
