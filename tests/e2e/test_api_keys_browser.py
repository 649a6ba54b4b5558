"""A real Chromium on the API keys page: create a read-only key (shown once, copyable, works
as a Bearer token at once), revoke it (then 401); the interactive API docs load offline under
their page's Content-Security-Policy with no violation."""
import os
import urllib.error
import urllib.request

import pytest

from credentials.models import ApiKey
from smtpeter_site.csp import POLICY

from .test_csp_browser import Watched
from .test_dashboard_browser import sign_in

# Playwright's sync API runs an event loop in this thread; the ORM calls here are synchronous.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def status_with(base: str, token: str) -> int:
    request = urllib.request.Request(f"{base}/api/v1/logins/",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_create_use_and_revoke_a_key(browser, live_server, plain_http, alice):
    base = live_server.url
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    watched = Watched(context)
    page = watched.page
    sign_in(page, base, "alice", "alice-pw-1234!")
    page.click("nav >> a:has-text('API keys')")
    page.wait_for_url(f"{base}/api-keys/")
    assert page.locator("text=No API keys yet.").is_visible()

    page.fill("#id_name", "billing app")
    page.check("input[name=scope][value=read]")
    page.click("button:has-text('Create key')")
    token = page.locator("#new-api-key").inner_text().strip()
    assert token.startswith("smtpeter_")
    page.click("button[data-copy='#new-api-key']")
    assert page.evaluate("navigator.clipboard.readText()") == token
    assert status_with(base, token) == 200

    page.click("a:has-text('I have saved it')")
    row = page.locator("tr.api-key")
    assert row.count() == 1
    assert "billing app" in row.inner_text() and "read-only" in row.inner_text()
    assert token not in page.content()
    assert row.locator(".key-state").inner_text().strip() == "active"
    assert "never" not in row.locator("td[data-label='Last used']").inner_text()

    row.locator("button:has-text('Revoke')").click()
    page.wait_for_url(f"{base}/api-keys/")
    assert "revoked" in page.locator("tr.api-key .key-state").inner_text()
    assert ApiKey.objects.get().revoked_at is not None
    assert status_with(base, token) == 401
    watched.collect()
    assert watched.problems == []


def test_the_api_docs_load_offline_under_their_policy(browser, live_server, plain_http):
    context = browser.new_context()
    watched = Watched(context)
    page = watched.page
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url)
            if not r.url.startswith((live_server.url, "data:")) else None)
    response = page.goto(f"{live_server.url}/api/v1/docs/")
    policy = response.headers["content-security-policy"]
    assert "img-src 'self' data:" in policy and "script-src 'self';" in policy
    assert policy != POLICY
    page.wait_for_selector("text=/api/v1/messages/", timeout=20000)
    assert page.locator(".opblock").count() >= 15
    watched.collect()
    assert watched.problems == [] and outside == []
    # Every other page keeps the strict policy.
    assert page.goto(f"{live_server.url}/signin/").headers["content-security-policy"] == POLICY
