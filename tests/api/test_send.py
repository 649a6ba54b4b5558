"""POST /api/v1/messages/: fields or raw, stored by the SMTP path's write_batch (202 only after
the commit), the login's features with X-SMTPeter-* overrides, the SMTP limits (413 on size,
400 on recipients, lines, addresses), and the owner's logins only."""
import base64
import email
from email import policy

import pytest

from credentials import services
from credentials.models import Login
from relay.models import Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def login(alice):
    login, _ = services.create_login(alice, features=["clicktracking"])
    return login


def send(api, login, **fields):
    return api.post("/api/v1/messages/", {"login": login.username, **fields})


def stored(response) -> Message:
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued"
    assert response["Location"].endswith(f"/api/v1/messages/{body['id']}/")
    return Message.objects.get(queue_id=body["id"])


def test_fields_are_built_into_a_message_and_queued(api, alice, login):
    m = stored(send(api, login, **{
        "from": "Shop <shop@example.com>", "to": ["Ann <ann@example.com>"],
        "cc": ["bo@example.com"], "bcc": ["audit@example.com"], "subject": "Grüße",
        "text": "Hello", "html": "<p>Hello <a href='https://example.com/'>link</a></p>",
        "tags": ["welcome", "2026"], "headers": {"X-SMTPeter-TrackOpens": "true",
                                                 "X-Campaign": "c1"},
        "attachments": [{"filename": "a.txt", "content_type": "text/plain",
                         "content": base64.b64encode(b"attached").decode()}],
    }))
    assert m.owner == alice and m.login == login and m.kind == "submission"
    assert m.mail_from == "shop@example.com" and m.subject == "Grüße"
    assert sorted(m.recipients.values_list("address", flat=True)) == [
        "ann@example.com", "audit@example.com", "bo@example.com"]
    assert set(m.recipients.values_list("state", flat=True)) == {"queued"}
    assert m.tags == ["welcome", "2026"]
    assert m.features["clicktracking"] is True and m.features["openstracking"] is True
    raw = bytes(m.raw)
    assert raw.startswith(b"Received: from [127.0.0.1]") and b"(REST API) id " + \
        m.queue_id.encode() in raw
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed["To"] == "Ann <ann@example.com>" and parsed["Bcc"] is None
    assert parsed["X-Campaign"] == "c1"
    parts = {p.get_content_type(): p for p in parsed.walk()}
    assert parts["text/plain"].get_content().strip() in ("Hello", "attached")
    assert "text/html" in parts
    assert any(p.get_filename() == "a.txt" for p in parsed.walk())
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    login.refresh_from_db()
    assert login.last_used is not None


def test_raw_with_envelope(api, login):
    raw = ("From: a@example.com\nTo: b@example.com\nSubject: raw\n"
           "X-SMTPeter-TrackClicks: false\n\nhi\n")
    m = stored(send(api, login, raw=raw, mail_from="bounce@example.com",
                    rcpt_to=["b@example.com", "c@example.com"]))
    assert m.mail_from == "bounce@example.com" and m.subject == "raw"
    assert m.features["clicktracking"] is False  # the header override, as on SMTP
    assert bytes(m.raw).endswith(b"Subject: raw\r\nX-SMTPeter-TrackClicks: false\r\n\r\nhi\r\n")
    assert m.recipients.count() == 2


def test_the_null_sender_is_allowed_in_raw(api, login):
    m = stored(send(api, login, raw="Subject: x\r\n\r\nx\r\n", mail_from="",
                    rcpt_to=["b@example.com"]))
    assert m.mail_from == ""


def test_too_large_is_413_and_nothing_is_stored(api, login, settings):
    settings.SMTP_MAX_MESSAGE_SIZE = 2000
    r = send(api, login, raw="Subject: big\r\n\r\n" + ("x" * 900 + "\r\n") * 3,
             mail_from="a@example.com", rcpt_to=["b@example.com"])
    assert r.status_code == 413 and "at most 2000" in r.json()["detail"]
    assert not Message.objects.exists()


def test_a_request_body_over_the_limit_is_413(api, login, settings):
    settings.SMTP_MAX_MESSAGE_SIZE = 1000
    r = send(api, login, raw="x" * (1024 * 1024 + 2000), mail_from="a@example.com",
             rcpt_to=["b@example.com"])
    assert r.status_code == 413 and "request body" in r.json()["detail"]


def test_a_message_larger_than_django_s_form_limit_is_taken(api, login, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000  # the send endpoint has its own limit
    line = "x" * 900 + "\r\n"
    r = send(api, login, raw="Subject: big\r\n\r\n" + line * 100, mail_from="a@example.com",
             rcpt_to=["b@example.com"])
    assert r.status_code == 202
    assert Message.objects.get().size > 90_000


def test_other_bodies_keep_django_s_limit(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    r = api.post("/api/v1/suppressions/", {"address": "a@example.com", "detail": "x" * 2000})
    assert r.status_code == 413


def test_deeply_nested_json_is_400(api):
    r = api.client.post("/api/v1/suppressions/", "[" * 200_000, content_type="application/json",
                        headers=api.headers)
    assert r.status_code == 400


@pytest.mark.parametrize("fields,field", [
    ({"raw": "Subject: x\r\n\r\n" + "y" * 999, "mail_from": "a@example.com",
      "rcpt_to": ["b@example.com"]}, "raw"),
    ({"raw": "Subject: x\r\n\r\nx", "rcpt_to": ["b@example.com"]}, "mail_from"),
    ({"raw": "Subject: x\r\n\r\nx", "mail_from": "a@example.com", "rcpt_to": ["b@example.com"],
      "subject": "both"}, "subject"),
    ({"raw": "x", "mail_from": "a@example.com", "rcpt_to": ["not an address"]}, "rcpt_to"),
    ({"raw": "x", "mail_from": "a@example.com", "rcpt_to": []}, "rcpt_to"),
    ({"raw": "x", "mail_from": "<a@example.com>", "rcpt_to": ["b@example.com"]}, "mail_from"),
    ({"to": ["b@example.com"]}, "from"),
    ({"from": "a@example.com"}, "to"),
    ({"from": "a@example.com", "to": ["b@example.com"], "tags": ["a,b"]}, "tags"),
    ({"from": "a@example.com", "to": ["b@example.com"], "headers": {"From": "x"}}, "headers"),
    ({"from": "a@example.com", "to": ["b@example.com"], "headers": {"X-A": "1\r\nBcc: x"}},
     "headers"),
    ({"from": "a@example.com", "to": ["b@example.com"], "headers": {"Bad Name": "1"}},
     "headers"),
    ({"from": "a@example.com", "to": ["b@example.com"],
      "attachments": [{"filename": "a", "content_type": "text/plain", "content": "!!"}]},
     "attachments[0]"),
    ({"from": "a@example.com", "to": ["b@example.com"],
      "attachments": [{"filename": "a", "content_type": "text", "content": ""}]},
     "attachments"),
    ({"from": "nobody", "to": ["b@example.com"]}, "from"),
    ({"raw": "Subject: \ud800\r\n\r\nx", "mail_from": "a@example.com",
      "rcpt_to": ["b@example.com"]}, "raw"),
    ({"from": "a@example.com", "to": ["b@example.com"], "subject": "two\nlines"}, "message"),
])
def test_bad_input_is_400_with_the_field(api, login, fields, field):
    r = send(api, login, **fields)
    assert r.status_code == 400, r.content
    assert field in r.json(), r.json()
    assert not Message.objects.exists()


def test_too_many_recipients_is_400(api, login, settings):
    settings.SMTP_MAX_RECIPIENTS = 2
    r = send(api, login, **{"from": "a@example.com",
                            "to": ["b@example.com", "c@example.com", "d@example.com"]})
    assert r.status_code == 400 and "at most 2" in r.json()["rcpt_to"][0]


def test_only_an_enabled_login_of_the_owner_sends(api, bob, login):
    theirs, _ = services.create_login(bob)
    fields = {"from": "a@example.com", "to": ["b@example.com"], "text": "x"}
    assert send(api, theirs, **fields).status_code == 400
    Login.objects.filter(pk=login.pk).update(enabled=False)
    r = send(api, login, **fields)
    assert r.status_code == 400 and "login" in r.json()
    assert not Message.objects.exists()
