"""The WSGI entry point: tracking URLs take the short middleware path, everything else the full."""
import io
import re
import sys

import pytest
from django.urls import reverse

from events.models import Event
from features import services
from relay.models import Message, Recipient
from smtpeter_site import wsgi

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    # As Django's test client does: the real handler closes "old" connections at the start
    # and end of each request, which would close the test's own transaction.
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)
HTML = b'<html><body><a href="https://example.com/a">Read</a></body></html>'


def call(path: str, method: str = "GET", host: str = "localhost") -> tuple[str, dict, bytes]:
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SCRIPT_NAME": "",
        "SERVER_NAME": "localhost", "SERVER_PORT": "443", "HTTP_HOST": host,
        "wsgi.url_scheme": "https", "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
        "REMOTE_ADDR": "198.51.100.9", "HTTP_USER_AGENT": "Mozilla/5.0 test",
    }
    seen = []
    body = wsgi.application(environ, lambda status, headers: seen.append((status, headers)))
    try:
        content = b"".join(body)
    finally:
        body.close()
    status, headers = seen[0]
    return status, dict(headers), content


@pytest.fixture
def click_path(settings):
    settings.TRACKING_BASE_URL = "http://localhost/t/"
    services.forget_links()
    raw = (b"From: s@example.com\r\nTo: r@example.org\r\nSubject: t\r\n"
           b"Content-Type: text/html; charset=utf-8\r\n\r\n" + HTML)
    msg = Message.objects.create(raw=raw, mail_from="s@example.com", size=len(raw),
                                 features={"clicktracking": True})
    rcpt = Recipient.objects.create(message=msg, address="r@example.org")
    body = services.render_for(msg, rcpt).message.decode()
    return re.search(r'href="http://localhost(/t/c/[A-Za-z0-9_-]+)"', body).group(1)


def test_a_click_through_the_short_path_redirects_records_and_keeps_the_security_headers(
        click_path):
    status, headers, _ = call(click_path)
    assert status.startswith("302") and headers["Location"] == "https://example.com/a"
    assert headers["Cache-Control"] == "no-store, private"
    assert headers["Content-Length"] == "0"  # else keep-alive answers go out chunked
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"
    # No session, CSRF or auth middleware ran: nothing varies on or sets a cookie.
    assert "Set-Cookie" not in headers and "Cookie" not in headers.get("Vary", "")
    event = Event.objects.get(type="click")
    assert event.data["ip"] == "198.51.100.9"


def test_only_tracking_paths_take_the_short_handler_and_it_has_no_view_middleware(
        monkeypatch):
    # Django keeps each handler's process_view hooks: CSRF and LoginRequired on the full one.
    assert wsgi.tracking._view_middleware == []
    assert len(wsgi.site._view_middleware) >= 2
    served = []
    monkeypatch.setattr(wsgi, "tracking", lambda environ, start: served.append(
        environ["PATH_INFO"]) or [])
    wsgi.application({"PATH_INFO": "/t/c/abc"}, None)
    wsgi.application({"PATH_INFO": "/t/o/abc"}, None)
    call(reverse("signin"))
    assert served == ["/t/c/abc", "/t/o/abc"]


def test_bad_tokens_and_methods_on_the_short_path_are_404_and_405(click_path):
    status, headers, content = call(click_path[:-3] + "AAA")
    assert status.startswith("404") and headers["Content-Length"] == str(len(content))
    assert call("/t/c/" + "A" * 30)[0].startswith("404")
    assert call(click_path, method="POST")[0].startswith("405")
    assert call(click_path, host="evil.example")[0].startswith("400")  # ALLOWED_HOSTS holds
    assert call("/t/nothing-here", host="evil.example")[0].startswith("400")
    assert not Event.objects.exists()


def test_the_tracking_prefix_is_where_the_urls_are_mounted():
    assert reverse("features:click", args=["x" * 20]).startswith(wsgi.TRACKING_PREFIX)
    assert reverse("features:open", args=["x" * 20]).startswith(wsgi.TRACKING_PREFIX)


def test_other_pages_get_the_full_middleware(settings):
    status, headers, content = call(reverse("signin"))
    assert status.startswith("200")
    assert "csrftoken=" in headers.get("Set-Cookie", "") or b"csrfmiddlewaretoken" in content
    status, headers, _ = call(reverse("logins"))  # LoginRequiredMiddleware: to the sign-in page
    assert status.startswith("302") and reverse("signin") in headers["Location"]
