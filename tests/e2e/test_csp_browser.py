"""Every dashboard and admin page works in a real Chromium under the Content-Security-Policy:
no violation reported, no script error, and the pages' scripts still run."""
import os

import pytest

from credentials import services
from credentials.models import AuditEntry
from smtpeter_site.csp import POLICY

# Playwright's sync API runs an event loop in this thread; the ORM calls here are synchronous.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Runs before the page's own scripts, outside the policy (Playwright injects it).
WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""
NOT_FOUND = "/no-such-page/"
HTML_MESSAGE = (
    "From: a@example.com\nTo: b@example.org\nSubject: styled\n"
    "Content-Type: text/html; charset=utf-8\n\n"
    '<html><head><style>p{color:red}</style><script>alert(1)</script></head>'
    '<body><p style="font-weight:bold" onclick="alert(2)">'
    '<a href="https://example.com/">Go</a></p></body></html>\n'
)


class Watched:
    """A page that keeps every CSP complaint and script error it sees."""

    def __init__(self, context):
        context.add_init_script(WATCH)
        self.page = context.new_page()
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

    def _console(self, message) -> None:
        # Expected to fail: the page that is not found on purpose, and the browser's own
        # request for /favicon.ico (there is none).
        expected = message.location.get("url", "").endswith((NOT_FOUND, "/favicon.ico"))
        if message.type == "error" and not expected:
            self.problems.append(f"{self.page.url}: {message.text}")

    def visit(self, url: str) -> None:
        response = self.page.goto(url)
        assert response.headers.get("content-security-policy") == POLICY, url
        self.page.wait_for_load_state("load")
        self.collect()

    def collect(self) -> None:
        for violation in self.page.evaluate("window.__violations || []"):
            self.problems.append(f"{self.page.url}: CSP {violation}")


def test_every_page_works_under_the_policy(browser, live_server, plain_http, admin_user):
    login, _ = services.create_login(admin_user, features=["clicktracking", "inlinecss"])
    base = live_server.url
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    watched = Watched(context)
    page = watched.page

    for url in ["/signin/", "/admin/login/", NOT_FOUND]:
        watched.visit(base + url)
    page.goto(f"{base}/signin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{base}/")

    pk = login.pk
    for url in ["/", "/logins/new/", f"/logins/{pk}/edit/", f"/logins/{pk}/reset/",
                f"/logins/{pk}/delete/", f"/connect/?login={pk}", "/audit/", "/audit/log/",
                "/account/password/", "/preview/"]:
        watched.visit(base + url)
        assert page.title().endswith("· smtpeter"), url

    # The stylesheet applies (a rule from site.css), and site.js runs: the account menu opens
    # and a copy button copies.
    assert page.evaluate("getComputedStyle(document.querySelector('.topbar')).display") != \
        "inline"
    page.click("details.account summary")
    assert page.locator(".account-menu a:has-text('Change password')").is_visible()
    page.goto(f"{base}/connect/?login={pk}")
    copy = page.locator("button[data-copy]").first
    copy.click()
    page.wait_for_function("document.querySelector('button[data-copy]').textContent"
                           " === 'Copied'")
    watched.collect()

    # The preview shows mail with its own <style>, <script> and handlers as text: none of it
    # runs or is applied in the dashboard, and the policy has nothing to refuse.
    page.goto(f"{base}/preview/")
    page.fill("textarea[name=message]", HTML_MESSAGE)
    page.click("button:has-text('Render')")
    page.wait_for_selector("#result")
    assert "<script>alert(1)</script>" in page.inner_text("#rendered")
    watched.collect()

    entry = AuditEntry.objects.first()
    for url in ["/admin/", "/admin/credentials/login/", f"/admin/credentials/login/{pk}/change/",
                f"/admin/credentials/login/{pk}/history/", "/admin/credentials/auditentry/",
                f"/admin/credentials/auditentry/{entry.pk}/change/", "/admin/auth/user/",
                "/admin/auth/user/add/", f"/admin/auth/user/{admin_user.pk}/change/",
                f"/admin/auth/user/{admin_user.pk}/password/"]:
        watched.visit(base + url)

    # The admin's own scripts run: selecting a row updates the action counter.
    page.goto(f"{base}/admin/credentials/login/")
    page.check("input.action-select")
    page.wait_for_function("document.querySelector('.action-counter').textContent"
                           ".startsWith('1 of 1')")
    watched.collect()
    assert watched.problems == []
    context.close()
