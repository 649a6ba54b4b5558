"""Hostile and broken clients against a real runsmtp: secrets stay out of the log, control
characters stay out of the database, and nothing ends in a traceback."""
import pytest

from relay.models import Message

from .smtp_helpers import LineClient, b64
from .test_submission import authed, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "Sup3r-Secret-Passw0rd-for-logs"


def _send_credentials_after_refusal(c: LineClient) -> list:
    return [c.cmd(b64("someone@example.com")), c.cmd(b64(SECRET))]


def _assert_secret_not_logged(server, replies) -> None:
    for r in replies:
        assert (r.code, r.text) == (500, "5.5.2 Command not recognized"), r
    log = wait_for(lambda: "5.5.2 Command not recognized" in server.log_text()
                   and server.log_text())
    assert log
    for form in (SECRET, b64(SECRET), b64(SECRET).upper()):
        assert form not in log


def test_credentials_after_538_are_neither_echoed_nor_logged(smtp_server):
    c = LineClient(smtp_server, smtp_server.starttls_port)
    c.cmd("EHLO client.test")
    assert c.cmd("AUTH LOGIN").code == 538
    _assert_secret_not_logged(smtp_server, _send_credentials_after_refusal(c))


def test_credentials_after_already_authenticated_are_not_logged(smtp_server, login):
    c = authed(smtp_server, login)
    r = c.cmd("AUTH LOGIN")
    assert (r.code, r.text[:6]) == (503, "5.5.1 ")
    _assert_secret_not_logged(smtp_server, _send_credentials_after_refusal(c))


def test_credentials_after_auth_in_a_transaction_are_not_logged(smtp_server, login):
    c = authed(smtp_server, login)
    assert c.cmd("MAIL FROM:<app@example.com>").code == 250
    assert c.cmd("AUTH LOGIN").code == 503
    _assert_secret_not_logged(smtp_server, _send_credentials_after_refusal(c))
    assert not Message.objects.exists()
