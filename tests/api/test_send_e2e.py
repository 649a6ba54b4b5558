"""End to end: a program POSTs to the API of a live web server, a real runsmtp (delivery
role) delivers the queued message to a test SMTP sink, and the API then shows it delivered
with its delivery event."""
import json
import time
import urllib.request

import pytest

from credentials import apikeys, services
from tests.e2e.conftest import live_server  # noqa: F401 - the live server without https redirect
from tests.relay.conftest import tls_files  # noqa: F401
from tests.relay.sink import Sink
from tests.relay.smtp_helpers import HOST, Server

pytestmark = pytest.mark.django_db(transaction=True)


def call(url: str, token: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def sink():
    with Sink() as sink:
        yield sink


@pytest.fixture
def delivering(tls_files, tmp_path, sink):  # noqa: F811
    env = {"DELIVERY_MODE": "mx", "RELAY_ROUTES": f"*={HOST}:{sink.port}",
           "DELIVERY_ALLOW_PRIVATE": "true", "DELIVERY_POLL_INTERVAL": "0.2",
           "SMTP_OUT_CONNECT_TIMEOUT": "5"}
    server = Server(cert=tls_files[0], key=tls_files[1], workdir=tmp_path, env_extra=env,
                    roles="delivery").start()
    yield server
    server.stop()
    log = server.log_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]


def test_a_message_sent_over_http_reaches_the_sink(live_server, delivering, sink,  # noqa: F811
                                                   alice, settings):
    login, _ = services.create_login(alice, features=["clicktracking"])
    _, token = apikeys.create_key(alice, "e2e", "write")
    base = live_server.url + "/api/v1"
    status, body = call(base + "/messages/", token, {
        "login": login.username, "from": "Shop <shop@example.com>", "to": ["ann@example.com"],
        "subject": "over http", "html": '<p><a href="https://example.com/x">x</a></p>',
        "headers": {"X-SMTPeter-Tags": "e2e"},
    })
    assert status == 202, body
    queue_id = body["id"]
    deadline = time.monotonic() + 30
    while not sink.received:
        assert time.monotonic() < deadline, delivering.log_text()[-3000:]
        time.sleep(0.1)
    got = sink.received[0]
    assert got.rcpt_tos == ["ann@example.com"]
    assert b"Subject: over http" in got.data
    assert b"X-SMTPeter" not in got.data  # overrides are stripped before delivery
    assert b"https://example.com/x" not in got.data  # the login's click tracking applied
    while True:
        status, detail = call(f"{base}/messages/{queue_id}/", token)
        if detail["recipients"][0]["state"] == "delivered":
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert detail["tags"] == ["e2e"] and detail["features"]["clicktracking"] is True
    # example.com is no verified sender domain: signed with the relay's domain, and said so
    # (the DKIM issue: unaligned mail is never sent silently).
    assert [e["type"] for e in detail["events"]] == ["warning", "delivery"]
    assert "not a verified sender domain" in detail["events"][0]["data"]["reason"]
    status, events = call(f"{base}/events/?type=delivery&message={queue_id}", token)
    assert status == 200 and events["results"][0]["recipient"] == "ann@example.com"
