"""API fixtures: keys of two owners, a client that sends a Bearer key, stored messages."""
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from credentials import apikeys
from credentials import services as logins
from events import services as events
from relay.models import Message, Recipient


class ApiClient:
    """Django's test client with ``Authorization: Bearer <token>`` and JSON bodies."""

    def __init__(self, token: str | None):
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path, params=None, **headers):
        return self.client.get(path, params or {}, headers={**self.headers, **headers})

    def _send(self, method, path, body, **headers):
        return getattr(self.client, method)(path, body, content_type="application/json",
                                            headers={**self.headers, **headers})

    def post(self, path, body=None, **headers):
        return self._send("post", path, body if body is not None else {}, **headers)

    def patch(self, path, body=None, **headers):
        return self._send("patch", path, body or {}, **headers)

    def put(self, path, body=None, **headers):
        return self._send("put", path, body or {}, **headers)

    def delete(self, path, **headers):
        return self.client.delete(path, headers={**self.headers, **headers})


def key_client(owner, scope="write", **kwargs) -> ApiClient:
    key, token = apikeys.create_key(owner, f"test {scope}", scope, **kwargs)
    client = ApiClient(token)
    client.key = key
    client.token = token
    return client


@pytest.fixture
def api(db, alice):
    """alice's read-write key."""
    return key_client(alice, "write")


@pytest.fixture
def api_read(db, alice):
    return key_client(alice, "read")


@pytest.fixture
def api_bob(db, bob):
    return key_client(bob, "write")


def store_message(owner, login=None, recipients=("ann@example.com",), tags=(), **fields):
    """A stored message with recipients, as the queue writer leaves it."""
    fields = {"mail_from": "shop@example.com", "raw": b"Subject: hi\r\n\r\nbody\r\n",
              "size": 25, "subject": "hi", "features": {"clicktracking": True}, **fields}
    m = Message.objects.create(owner=owner, login=login, tags=list(tags), **fields)
    for address in recipients:
        Recipient.objects.create(message=m, address=address, next_attempt_at=timezone.now())
    return m


@pytest.fixture
def alice_mail(db, alice):
    login, _ = logins.create_login(alice)
    m = store_message(alice, login, ("ann@example.com", "bo@example.com"), tags=["news"])
    r1, r2 = m.recipients.order_by("id")
    events.record("delivery", m, r1, {"response": "250 ok"})
    events.record("click", m, r1, {"url": "https://example.com/"}, flags=["scanner"])
    events.record("open", m, r2, {})
    return m


@pytest.fixture
def bob_mail(db, bob):
    login, _ = logins.create_login(bob)
    m = store_message(bob, login, ("carl@example.com",))
    events.record("delivery", m, m.recipients.first(), {})
    return m


def in_a_day():
    return timezone.now() + timedelta(days=1)


@pytest.fixture(autouse=True)
def _fresh_rate_limit():
    # The per-key request counts live in the cache; each test starts with none.
    from django.core.cache import cache

    cache.clear()
