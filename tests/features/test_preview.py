"""The preview page and `manage.py render`: a customer sees what a login does to a message."""
import io
import re
import sys

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client

from credentials.services import create_login
from features.services import bounce_ids

pytestmark = pytest.mark.django_db
RAW = (b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\nX-SMTPeter-Tags: news\r\n"
       b"Content-Type: text/html; charset=utf-8\r\n\r\n"
       b'<html><head><style>p{color:red}</style></head><body><p><a href="https://example.com/?a=1'
       b'&amp;b=2">Go</a> <a href="https://example.com/">example.com</a></p></body></html>\r\n')


@pytest.fixture
def logins(alice, bob):
    mine, _ = create_login(alice, features=["clicktracking", "openstracking", "preventscam",
                                            "bouncetracking", "inlinecss"])
    theirs, _ = create_login(bob, features=["clicktracking"])
    return mine, theirs


def test_preview_needs_sign_in(client):
    response = client.get("/preview/")
    assert response.status_code == 302 and "signin" in response["Location"]


def test_preview_offers_only_my_logins(client, alice, logins):
    mine, theirs = logins
    client.force_login(alice)
    page = client.get("/preview/").content.decode()
    assert mine.username in page and theirs.username not in page


def test_preview_renders_and_lists_the_changes(client, alice, logins):
    mine, _ = logins
    client.force_login(alice)
    response = client.post("/preview/", {
        "login": mine.pk, "message": RAW.decode(), "rcpt": "reader@example.org",
        "mail_from": "sender@example.com",
    })
    page = response.content.decode()
    assert response.status_code == 200
    rendered = re.search(r'<pre id="rendered">(.*?)</pre>', page, re.S).group(1)
    assert "/t/c/" in rendered and "/t/o/" in rendered and "X-SMTPeter-Tags" not in rendered
    assert "links rewritten: 1" in page
    assert "links left alone by preventscam: 1" in page
    assert "tracking pixel inserted: 1" in page and "CSS inlined: 1" in page
    assert "tags: news" in page
    envelope = re.search(r'<code id="envelope">([^<]+)</code>', page).group(1)
    assert envelope.endswith("@bounces.localhost") and bounce_ids(envelope) == (0, 0)


def test_preview_takes_an_uploaded_file(client, alice, logins):
    mine, _ = logins
    client.force_login(alice)
    upload = SimpleUploadedFile("m.eml", RAW, content_type="message/rfc822")
    response = client.post("/preview/", {"login": mine.pk, "upload": upload,
                                         "rcpt": "reader@example.org"})
    assert response.status_code == 200 and "/t/c/" in response.content.decode()


def test_preview_with_nothing_to_render_says_so(client, alice, logins):
    mine, _ = logins
    client.force_login(alice)
    response = client.post("/preview/", {"login": mine.pk, "rcpt": "reader@example.org"})
    assert response.status_code == 400
    assert "Paste a message or upload a file." in response.content.decode()


def test_a_bad_form_is_400_with_its_message(client, alice, logins):
    mine, _ = logins
    client.force_login(alice)
    response = client.post("/preview/", {"login": mine.pk, "message": RAW.decode(),
                                         "rcpt": "not an address"})
    assert response.status_code == 400 and "Enter a valid email address." in (
        response.content.decode())


def test_an_oversized_upload_is_413_with_a_message_and_nothing_rendered(client, alice, logins):
    mine, _ = logins
    client.force_login(alice)
    big = RAW + b"x" * (10 * 1024 * 1024 + 100_000)
    upload = SimpleUploadedFile("m.eml", big, content_type="message/rfc822")
    response = client.post("/preview/", {"login": mine.pk, "upload": upload,
                                         "rcpt": "reader@example.org"})
    page = response.content.decode()
    assert response.status_code == 413 and "larger than 10 MiB" in page
    assert 'id="result"' not in page


def test_a_pasted_message_over_the_post_limit_is_413_with_a_message(client, alice, logins,
                                                                     settings):
    mine, _ = logins
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    client.force_login(alice)
    response = client.post("/preview/", {"login": mine.pk, "rcpt": "reader@example.org",
                                         "message": RAW.decode() + "x" * 20_000})
    assert response.status_code == 413 and "upload it as a file" in response.content.decode()


# "²" and "١" are str.isdigit() but not ASCII digits; int("²") raises ValueError.
@pytest.mark.parametrize("value", ["theirs", "999999", "abc", "²", "1²", "١", "-1",
                                   "99999999999999999999999", "9" * 5000])
def test_another_customers_login_is_404(client, alice, logins, value):
    _, theirs = logins
    client.force_login(alice)
    login = theirs.pk if value == "theirs" else value
    response = client.post("/preview/", {"login": login, "message": RAW.decode(),
                                         "rcpt": "reader@example.org"})
    assert response.status_code == 404


def test_preview_form_is_csrf_protected(alice, logins):
    mine, _ = logins
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post("/preview/", {"login": mine.pk, "message": RAW.decode(),
                                         "rcpt": "reader@example.org"})
    assert response.status_code == 403
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"',
                      client.get("/preview/").content.decode()).group(1)
    response = client.post("/preview/", {"login": mine.pk, "message": RAW.decode(),
                                         "rcpt": "reader@example.org",
                                         "csrfmiddlewaretoken": token})
    assert response.status_code == 200


def run_render(monkeypatch, raw: bytes, *args):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
    out, err = io.TextIOWrapper(io.BytesIO()), io.StringIO()
    call_command("render", *args, stdout=out, stderr=err)
    out.flush()
    return out.buffer.getvalue(), err.getvalue()


def test_render_command_prints_the_message_and_the_envelope_sender(monkeypatch, logins):
    mine, _ = logins
    message, err = run_render(monkeypatch, RAW, "--login", mine.username, "--rcpt", "r@x.org")
    assert message.startswith(b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n"
                              b"Content-Type: text/html; charset=utf-8\r\n\r\n")
    assert b"/t/c/" in message and b'style="color: red;"' in message
    assert re.search(r"envelope sender: <b[a-z2-7]+@bounces\.localhost>", err)


def test_render_command_without_features_is_byte_identical(monkeypatch, alice):
    plain, _ = create_login(alice, features=[])
    message, err = run_render(monkeypatch, RAW, "--login", plain.username)
    assert message == RAW.replace(b"X-SMTPeter-Tags: news\r\n", b"")
    assert "envelope sender: <sender@example.com>" in err


def test_render_command_refuses_an_unknown_login(monkeypatch):
    with pytest.raises(CommandError, match="no login named"):
        run_render(monkeypatch, RAW, "--login", "nobody")
