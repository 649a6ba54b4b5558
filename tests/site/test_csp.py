"""Every page answers with the Content-Security-Policy, and no template needs an exception."""
import re
from pathlib import Path

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from api.docs import DOCS_POLICY
from credentials import services
from credentials.models import AuditEntry
from events import webhooks
from events.services import record
from relay import suppression
from relay.models import Message, Recipient
from senders import services as senders
from smtpeter_site.csp import POLICY

ROOT = Path(__file__).resolve().parents[2]


def page_names(patterns=None, prefix="") -> set[str]:
    """Names of every URL pattern outside the Django admin (the admin is walked below)."""
    names = set()
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            if entry.app_name == "admin":
                continue
            names |= page_names(entry.url_patterns, f"{entry.namespace}:" if entry.namespace
                                else prefix)
        elif isinstance(entry, URLPattern) and entry.name:
            names.add(prefix + entry.name)
    return names


@pytest.fixture
def staff_login(staff):
    login, _ = services.create_login(staff, features=["clicktracking"], description="app")
    return login


def walk(staff_login, staff) -> dict[str, list[str]]:
    pk = staff_login.pk
    message = Message.objects.create(
        owner=staff, login=staff_login, mail_from="a@example.org",
        raw=b"Subject: hi\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n")
    Recipient.objects.create(message=message, address="b@example.org")
    qid = message.queue_id
    entry = suppression.add(staff.pk, "c@example.org", "manual", actor=staff)
    domain = senders.add_domain(staff, "staff.example").pk
    record("bounce", message, None, {"class": "hard", "reason": "invalid_recipient",
                                     "status": "5.1.1", "intake": qid})
    hook, _ = webhooks.create_endpoint(staff, "https://hooks.example.com/in", ["bounce"])
    webhooks.send_test(hook)
    return {
        # URL name -> the pages of it that are visited (signed in as a staff user)
        "signin": ["/signin/"],
        "healthz": ["/healthz"],
        "metrics": ["/metrics"],
        "queue": ["/queue/"],
        "signout": ["/signout/"],
        "password_change": ["/account/password/"],
        "logins": ["/"],
        "login_create": ["/logins/new/"],
        "login_edit": [f"/logins/{pk}/edit/"],
        "login_set_enabled": [f"/logins/{pk}/enabled/"],
        "login_reset": [f"/logins/{pk}/reset/"],
        "login_delete": [f"/logins/{pk}/delete/"],
        "connect": ["/connect/", f"/connect/?login={pk}"],
        "audit_logins": ["/audit/"],
        "audit_logins_csv": ["/audit/logins.csv"],
        "audit_log": ["/audit/log/"],
        "preview:preview": ["/preview/"],
        "features:click": ["/t/c/not-a-token"],
        "features:open": ["/t/o/not-a-token"],
        "messages": ["/messages/", "/messages/?q=x"],
        "message": [f"/messages/{qid}/"],
        "message_raw": [f"/messages/{qid}/raw/"],
        "message_html": [f"/messages/{qid}/html/"],
        "message_retry": [f"/messages/{qid}/retry/"],
        "message_hold": [f"/messages/{qid}/hold/"],
        "message_release": [f"/messages/{qid}/release/"],
        "message_delete": [f"/messages/{qid}/delete/"],
        "outbox": ["/outbox/"],
        "bounces": ["/bounces/", "/bounces/?bounce_class=hard&reason=invalid_recipient"],
        "suppressions": ["/suppressions/", "/suppressions/?q=x&state=all"],
        "suppression_add": ["/suppressions/add/"],
        "suppression_import": ["/suppressions/import/"],
        "suppression_export": ["/suppressions/export.csv"],
        "suppression_remove": [f"/suppressions/{entry.pk}/remove/"],
        "api_keys": ["/api-keys/"],
        "api_key_revoke": ["/api-keys/1/revoke/"],
        # The REST API answers a session with 401 JSON, under the same policy.
        "event-list": ["/api/v1/events/"],
        "message-list": ["/api/v1/messages/"],
        "message-detail": [f"/api/v1/messages/{qid}/"],
        "message-raw": [f"/api/v1/messages/{qid}/raw"],
        "login-list": ["/api/v1/logins/"],
        "login-detail": [f"/api/v1/logins/{pk}/"],
        "login-reset-password": [f"/api/v1/logins/{pk}/reset-password/"],
        "suppression-list": ["/api/v1/suppressions/"],
        "suppression-detail": [f"/api/v1/suppressions/{entry.pk}/"],
        "stats-report": ["/api/v1/stats/", "/api/v1/stats/?start=bad"],
        "webhook-list": ["/api/v1/webhooks/"],
        "webhook-detail": [f"/api/v1/webhooks/{hook.pk}/"],
        "webhook-deliveries": [f"/api/v1/webhooks/{hook.pk}/deliveries/"],
        "webhook-test": [f"/api/v1/webhooks/{hook.pk}/test/"],
        "domain-list": ["/api/v1/domains/"],
        "domain-detail": [f"/api/v1/domains/{domain}/"],
        "domain-check": [f"/api/v1/domains/{domain}/check/"],
        "domain-rotate": [f"/api/v1/domains/{domain}/rotate/"],
        "api-schema": ["/api/v1/schema/", "/api/v1/schema/?format=json"],
        "api-docs": ["/api/v1/docs/", "/api/v1/docs/?script="],
        "sender_domains": ["/domains/"],
        "sender_domain": [f"/domains/{domain}/"],
        "sender_domain_check": [f"/domains/{domain}/check/"],
        "sender_domain_rotate": [f"/domains/{domain}/rotate/"],
        "sender_domain_delete": [f"/domains/{domain}/delete/"],
        "stats": ["/stats/", f"/stats/?login={pk}&tag=x&machine=on", "/stats/?start=bad"],
        "webhooks": ["/webhooks/"],
        "webhook": [f"/webhooks/{hook.pk}/"],
        "webhook_set_enabled": [f"/webhooks/{hook.pk}/enabled/"],
        "webhook_test": [f"/webhooks/{hook.pk}/test/"],
        "webhook_delete": [f"/webhooks/{hook.pk}/delete/"],
    }


ADMIN_PAGES = [
    "/admin/", "/admin/credentials/", "/admin/credentials/login/",
    "/admin/credentials/login/{login}/change/", "/admin/credentials/login/{login}/delete/",
    "/admin/credentials/login/{login}/history/", "/admin/credentials/auditentry/",
    "/admin/credentials/auditentry/{entry}/change/", "/admin/auth/user/",
    "/admin/auth/user/add/", "/admin/auth/user/{user}/change/",
    "/admin/auth/user/{user}/password/", "/admin/auth/group/", "/admin/jsi18n/",
]


# A message's raw source and its HTML (shown in a sandboxed frame) carry a stricter policy of
# their own: a sandbox, nothing fetched, no script.
SANDBOXED = re.compile(r"/messages/[^/]+/(raw|html)/")
# The API docs (Swagger UI) also take data: images and inline styles (api/docs.py).
API_DOCS = "/api/v1/docs/"


def assert_policy(response, url: str) -> None:
    policy = response.headers.get("Content-Security-Policy")
    if SANDBOXED.search(url):
        assert policy and policy.startswith("sandbox") and "default-src 'none'" in policy, url
        assert "script-src" not in policy or "script-src 'none'" in policy, url
    elif url.startswith(API_DOCS):
        assert policy == DOCS_POLICY, url
        assert "script-src 'self';" in policy and "unsafe" not in policy.split("style-src")[0]
    else:
        assert policy == POLICY, url
    assert response.status_code < 500, url


def test_the_policy_allows_nothing_inline_and_nothing_foreign():
    directives = dict(d.split(" ", 1) for d in POLICY.split("; "))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert "unsafe" not in POLICY and "*" not in POLICY


@pytest.mark.django_db
def test_every_dashboard_page_has_the_policy(staff, staff_login):
    pages = walk(staff_login, staff)
    assert set(pages) == page_names()  # a new page must be added to the walk
    client = Client()
    client.force_login(staff)
    statuses = {}
    for urls in pages.values():
        for url in urls:
            response = client.get(url)
            assert_policy(response, url)
            statuses[url] = response.status_code
    assert statuses["/"] == statuses["/preview/"] == statuses["/audit/log/"] == 200
    response = client.post("/preview/", {"login": staff_login.pk, "rcpt": "a@example.org",
                                         "message": "Subject: x\n\n<b>x</b>\n"})
    assert response.status_code == 200
    assert_policy(response, "POST /preview/")
    assert_policy(client.get("/no-such-page/"), "404")


@pytest.mark.django_db
def test_every_admin_page_and_both_sign_in_pages_have_the_policy(staff, staff_login,
                                                                 admin_user):
    entry = AuditEntry.objects.first()
    client = Client()
    for url in ["/signin/", "/admin/login/", "/", "/admin/", "/t/c/x"]:
        assert_policy(client.get(url), url)  # signed out
    assert_policy(client.post("/signin/", {"username": "x", "password": "y"}), "POST signin")
    client.force_login(admin_user)
    for template in ADMIN_PAGES:
        url = template.format(login=staff_login.pk, entry=entry.pk, user=staff.pk)
        response = client.get(url)
        assert response.status_code == 200, url
        assert_policy(response, url)


def test_with_debug_only_the_technical_error_pages_go_without_it(settings, client):
    settings.DEBUG = True
    assert "Content-Security-Policy" not in client.get("/no-such-page/").headers
    assert client.get("/signin/").headers["Content-Security-Policy"] == POLICY


@pytest.mark.django_db(transaction=True)  # the real handler closes the connection after each
def test_both_wsgi_paths_send_the_policy():
    from tests.site.test_wsgi import call

    # The tracking path's 404 page (a bad token: no database work) and a dashboard page.
    for path in ["/t/c/" + "A" * 30, "/signin/"]:
        status, headers, _ = call(path)
        assert status[:3] in ("200", "404") and headers["Content-Security-Policy"] == POLICY


INLINE = {
    "inline script": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I),
    "style element": re.compile(r"<style\b", re.I),
    "style attribute": re.compile(r"\sstyle\s*=", re.I),
    "event handler attribute": re.compile(r"\son[a-z]+\s*=", re.I),
    "javascript: URL": re.compile(r"javascript:", re.I),
}


def inline_parts(text: str) -> list[str]:
    return [what for what, pattern in INLINE.items() if pattern.search(text)]


def test_the_template_check_sees_each_inline_shape():
    assert inline_parts('<script>go()</script><script src="/s.js"></script>') == ["inline script"]
    assert inline_parts("<style>p{}</style>") == ["style element"]
    assert inline_parts('<p class="a" style="color:red">') == ["style attribute"]
    assert inline_parts('<a href="#" onclick="go()">') == ["event handler attribute"]
    assert inline_parts('<a href="javascript:go()">') == ["javascript: URL"]
    assert inline_parts('<script src="/s.js" defer></script><p class="one">') == []


def test_no_template_holds_inline_script_or_style():
    found = [f"{path.relative_to(ROOT)}: {what}"
             for path in sorted((ROOT / "templates").rglob("*.html"))
             for what in inline_parts(path.read_text())]
    assert found == []
