"""The client address recorded in audit entries: REMOTE_ADDR unless a trusted proxy says more."""
import pytest
from django.test import RequestFactory

from credentials.clientip import client_ip


def request(**meta):
    return RequestFactory().get("/", **meta)


def test_remote_addr_is_used_and_forwarded_header_ignored_by_default(settings):
    settings.TRUST_X_FORWARDED_FOR = False
    assert client_ip(request(REMOTE_ADDR="192.0.2.8", HTTP_X_FORWARDED_FOR="6.6.6.6")) == (
        "192.0.2.8")


@pytest.mark.parametrize("header, expected", [
    ("198.51.100.7", "198.51.100.7"),
    ("6.6.6.6, 198.51.100.7", "198.51.100.7"),  # the client's own entries come first
    ("2001:db8::1", "2001:db8::1"),
    ("not-an-address", "10.0.0.1"),  # garbage: fall back to the proxy's address
    ("", "10.0.0.1"),
])
def test_last_forwarded_entry_when_trusted(settings, header, expected):
    settings.TRUST_X_FORWARDED_FOR = True
    assert client_ip(request(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=header)) == expected


def test_unusable_remote_addr_gives_none(settings):
    settings.TRUST_X_FORWARDED_FOR = False
    assert client_ip(request(REMOTE_ADDR="")) is None
    assert client_ip(request(REMOTE_ADDR="unix:/run/app.sock")) is None
