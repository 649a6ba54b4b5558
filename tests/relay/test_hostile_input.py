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


@pytest.mark.parametrize("command", ["EHLO", "HELO"])
@pytest.mark.parametrize(
    "junk", [b"\x00", b"\x01", b"\x7f", b"\t"], ids=["nul", "soh", "del", "tab"]
)
def test_control_characters_in_the_greeting_get_501(smtp_server, login, command, junk):
    c = LineClient(smtp_server, smtp_server.tls_port, implicit_tls=True)
    c.send(command.encode() + b" evil" + junk + b"host.test\r\n")
    r = c.reply()
    assert (r.code, r.text[:6]) == (501, "5.5.4 "), r
    # The session goes on, and a message sent after a proper greeting is stored.
    assert c.cmd("EHLO client.test").code == 250
    assert c.auth_plain(login[0].username, login[1]).code == 235
    assert c.send_message(b"Subject: x\r\n\r\nx\r\n").code == 250
    assert Message.objects.get().helo == "client.test"


@pytest.mark.parametrize("orcpt", ["a+0Ab", "a+0D+0ABcc:+20x@example.org", "a+00b", "a+ff",
                                   "a+7F"])
def test_orcpt_must_decode_to_printable_ascii(smtp_server, login, orcpt):
    c = authed(smtp_server, login)
    c.cmd("MAIL FROM:<app@example.com>")
    r = c.cmd(f"RCPT TO:<bob@example.org> ORCPT=rfc822;{orcpt}")
    assert (r.code, r.text[:6]) == (501, "5.5.4 "), r
    assert c.cmd("RCPT TO:<bob@example.org> ORCPT=rfc822;bob+2Bx@example.org").code == 250
    c.cmd("DATA")
    c.send(b"Subject: x\r\n\r\nx\r\n.\r\n")
    assert c.reply().code == 250
    assert Message.objects.get().recipients.get().orcpt == "rfc822;bob+x@example.org"


# -- the AUTH exchange -----------------------------------------------------------------


@pytest.mark.parametrize("length", [12_287, 200_000])
def test_overlong_auth_line_gets_one_500_and_the_session_goes_on(smtp_server, login, length):
    c = LineClient(smtp_server, smtp_server.tls_port, implicit_tls=True, source_ip="127.0.0.91")
    c.cmd("EHLO client.test")
    assert c.cmd("AUTH LOGIN").code == 334
    r = c.cmd("A" * length)
    assert (r.code, r.text) == (500, "5.5.6 Authentication exchange line is too long"), r
    assert c.cmd("NOOP").code == 250
    assert c.buf == b""  # one reply only: nothing of the long line was read as a command
    assert c.auth_plain(login[0].username, login[1]).code == 235


def test_auth_lines_up_to_12288_octets_are_read(smtp_server, login):
    c = LineClient(smtp_server, smtp_server.tls_port, implicit_tls=True, source_ip="127.0.0.92")
    c.cmd("EHLO client.test")
    assert c.cmd("AUTH PLAIN").code == 334
    blob = b64(f"\0{'u' * 9000}\0secret")  # 12,012 octets with CRLF
    assert c.cmd(blob).code == 535  # read whole and checked, not refused as too long
    assert c.cmd("AUTH LOGIN").code == 334
    assert c.cmd("A" * 3000).code == 334  # a 2,250-octet username: on to the password
    assert c.cmd("*").code == 501
    blob = b64(f"\0{login[0].username}\0{login[1]}")
    assert c.cmd("AUTH PLAIN").code == 334
    assert c.cmd(blob + " " * (12286 - len(blob) + 1)).code == 500  # 12,289 octets
    assert c.cmd("AUTH PLAIN").code == 334
    assert c.cmd(blob + " " * (12286 - len(blob))).code == 235  # exactly 12,288


def test_auth_login_cancelled_with_a_star(smtp_server, login):
    c = LineClient(smtp_server, smtp_server.tls_port, implicit_tls=True, source_ip="127.0.0.93")
    c.cmd("EHLO client.test")
    assert c.cmd("AUTH LOGIN").code == 334
    r = c.cmd("*")
    assert (r.code, r.text[:6]) == (501, "5.7.0 "), r
    assert c.cmd(f"AUTH LOGIN {b64(login[0].username)}").code == 334
    r = c.cmd("*")
    assert (r.code, r.text[:6]) == (501, "5.7.0 "), r
    assert c.auth_plain(login[0].username, login[1]).code == 235


def test_auth_empty_initial_response(smtp_server, login):
    c = LineClient(smtp_server, smtp_server.tls_port, implicit_tls=True, source_ip="127.0.0.94")
    c.cmd("EHLO client.test")
    r = c.cmd("AUTH PLAIN =")  # an empty PLAIN response has no NULs to split on
    assert (r.code, r.text[:6]) == (501, "5.5.2 "), r
    r = c.cmd("AUTH LOGIN =")  # an empty username: asked for the password, then refused
    assert (r.code, r.text) == (334, b64("Password:")), r
    r = c.cmd(b64(login[1]))
    assert (r.code, r.text[:6]) == (535, "5.7.8 "), r


def test_auth_plain_with_another_authorization_identity_gets_535(smtp_server, login, alice):
    from credentials import services

    other, _ = services.create_login(alice)
    c = LineClient(smtp_server, smtp_server.tls_port, implicit_tls=True, source_ip="127.0.0.95")
    c.cmd("EHLO client.test")
    r = c.cmd("AUTH PLAIN " + b64(f"{other.username}\0{login[0].username}\0{login[1]}"))
    assert (r.code, r.text[:6]) == (535, "5.7.8 "), r
    # The same identity on both sides is fine.
    r = c.cmd("AUTH PLAIN " + b64(f"{login[0].username}\0{login[0].username}\0{login[1]}"))
    assert r.code == 235, r


@pytest.mark.parametrize("exchange", [
    ["AUTH PLAIN not*base64"],
    ["AUTH PLAIN", "not*base64"],
    ["AUTH LOGIN", "abc"],  # bad padding
    ["AUTH LOGIN dXNlcg==", "not*base64"],
])
def test_bad_base64_gets_501(smtp_server, login, exchange):
    c = LineClient(smtp_server, smtp_server.tls_port, implicit_tls=True, source_ip="127.0.0.96")
    c.cmd("EHLO client.test")
    for line in exchange[:-1]:
        assert c.cmd(line).code == 334
    r = c.cmd(exchange[-1])
    assert (r.code, r.text[:6]) == (501, "5.5.2 "), r
    assert c.auth_plain(login[0].username, login[1]).code == 235


def test_a_long_username_is_logged_bounded(smtp_server):
    """A username may be 12 KB (or a password typed into the wrong field): each log line holds
    at most its first 100 characters, escaped."""
    username = "long-user-\u00e9" + "u" * 4984 + "-tail"
    assert len(username) == 5000
    for i in range(4):  # three failures, then this username is throttled from this IP
        c = LineClient(smtp_server, smtp_server.tls_port, implicit_tls=True,
                       source_ip="127.0.0.97")
        c.cmd("EHLO client.test")
        assert c.cmd("AUTH PLAIN").code == 334
        assert c.cmd(b64(f"\0{username}\0wrong")).code == (454 if i == 3 else 535)
        c.close()
    logged = "long-user-\\xe9" + "u" * 86
    assert len(logged) == 100
    log = wait_for(lambda: "AUTH throttled: ip=127.0.0.97" in smtp_server.log_text()
                   and smtp_server.log_text())
    lines = [line for line in log.splitlines() if "long-user-" in line]
    assert len(lines) == 4, lines
    for line in lines:
        assert f"username='{logged}'" in line, line[:300]  # the quote closes after 100
    assert "-tail" not in log
