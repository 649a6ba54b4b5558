"""The mx role of a real runsmtp without AUTH: anyone on the internet can send there, so it
takes only genuine VERP addresses and SMTP_MX_ADDRESSES at BOUNCE_DOMAIN, smaller messages
(SMTP_MX_MAX_SIZE) and at most 10 recipients; <Postmaster> without a domain too."""
import pytest
from django.db import connection

from features.services import verp_key
from features.tokens import verp_address
from relay.models import Message

from .conftest import ACCEPT_ROLES, SERVER_ENV
from .smtp_helpers import LineClient, Server
from .test_submission import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
MX_SIZE = 100_000  # SMTP_MAX_MESSAGE_SIZE is 200,000 here


@pytest.fixture(scope="module")
def mx_server(django_db_setup, django_db_blocker, tls_files, tmp_path_factory):
    """SMTP_MX_ADDRESSES at its default; room for 50 recipients after AUTH."""
    with django_db_blocker.unblock():
        connection.ensure_connection()
    server = Server(
        cert=tls_files[0], key=tls_files[1], workdir=tmp_path_factory.mktemp("runsmtp"),
        env_extra={**SERVER_ENV, "SMTP_MAX_RECIPIENTS": "50", "SMTP_MX_MAX_SIZE": str(MX_SIZE)},
        roles=ACCEPT_ROLES,
    ).start()
    yield server
    server.stop()
    log = server.log_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]


def verp(n: int, domain: str = "bounces.test") -> str:
    return verp_address(verp_key(), 1000 + n, 2000 + n, domain)


def mx_client(server) -> LineClient:
    c = LineClient(server, server.mx_port)
    assert c.cmd("EHLO mta.example.net").code == 250
    assert c.cmd("MAIL FROM:<>").code == 250
    return c


def test_only_verp_and_role_addresses_at_the_bounce_domain(mx_server):
    c = mx_client(mx_server)
    forged = verp(1).replace("@", "x@", 1)  # a VERP whose tag does not match
    for address in ["anything@bounces.test", "b-123@bounces.test", forged,
                    "postmaster.x@bounces.test", "info@Bounces.Test"]:
        r = c.cmd(f"RCPT TO:<{address}>")
        assert (r.code, r.text[:6]) == (550, "5.1.1 "), (address, r)
    r = c.cmd("RCPT TO:<someone@example.org>")  # elsewhere: no relay, as before
    assert (r.code, r.text[:6]) == (550, "5.7.1 "), r
    accepted = [verp(2), verp(3, "BOUNCES.test"), "postmaster@bounces.test",
                "Abuse@Bounces.Test", "fbl@bounces.test"]
    for address in accepted:
        r = c.cmd(f"RCPT TO:<{address}>")
        assert (r.code, r.text[:6]) == (250, "2.1.5 "), (address, r)
    assert c.cmd("DATA").code == 354
    c.send(b"Subject: Undelivered\r\n\r\nreport\r\n.\r\n")
    assert c.reply().code == 250
    message = Message.objects.get()
    assert message.kind == "bounce" and message.login is None
    assert [r.address for r in message.recipients.order_by("id")] == accepted
    log = wait_for(lambda: "info@Bounces.Test" in mx_server.log_text() and mx_server.log_text())
    assert "RCPT to an unknown mx address from 127.0.0.1: anything@bounces.test" in log


def test_postmaster_without_a_domain(mx_server, login):
    c = mx_client(mx_server)
    r = c.cmd("RCPT TO:<Postmaster>")
    assert (r.code, r.text[:6]) == (250, "2.1.5 "), r
    assert c.cmd("DATA").code == 354
    c.send(b"Subject: hello postmaster\r\n\r\nx\r\n.\r\n")
    assert c.reply().code == 250
    # Stored as postmaster at BOUNCE_DOMAIN, so that every recipient row has a domain.
    assert [r.address for r in Message.objects.get().recipients.all()] == [
        "postmaster@bounces.test"]
    c.cmd("MAIL FROM:<>")
    assert c.cmd("RCPT TO:<nobody>").code == 553  # only postmaster goes without a domain


def test_the_mx_size_limit_is_advertised_and_enforced(mx_server, login):
    c = LineClient(mx_server, mx_server.mx_port)
    assert f"SIZE {MX_SIZE}" in c.cmd("EHLO mta.example.net").lines
    r = c.cmd(f"MAIL FROM:<> SIZE={MX_SIZE + 1}")
    assert (r.code, r.text[:6]) == (552, "5.3.4 "), r
    assert c.cmd(f"MAIL FROM:<> SIZE={MX_SIZE}").code == 250
    assert c.cmd("RCPT TO:<postmaster@bounces.test>").code == 250
    assert c.cmd("DATA").code == 354
    line = b"x" * 998 + b"\r\n"
    c.send(b"Subject: big\r\n\r\n" + line * (MX_SIZE // len(line) + 1) + b".\r\n")
    r = c.reply()
    assert (r.code, r.text[:6]) == (552, "5.3.4 "), r
    assert not Message.objects.exists()
    # After AUTH (STARTTLS first on the mx port) the submission limit applies.
    c.starttls()
    c.cmd("EHLO client.test")
    assert c.auth_plain(login[0].username, login[1]).code == 235
    assert "SIZE 200000" in c.cmd("EHLO client.test").lines
    assert c.cmd(f"MAIL FROM:<app@example.com> SIZE={MX_SIZE + 1}").code == 250


def test_at_most_ten_recipients_without_auth(mx_server, login):
    c = mx_client(mx_server)
    for i in range(10):
        assert c.cmd(f"RCPT TO:<{verp(i)}>").code == 250
    r = c.cmd(f"RCPT TO:<{verp(10)}>")
    assert (r.code, r.text[:6]) == (452, "4.5.3 "), r
    # An authenticated submission on the mx port keeps SMTP_MAX_RECIPIENTS (50 here).
    a = LineClient(mx_server, mx_server.mx_port)
    a.cmd("EHLO client.test")
    a.starttls()
    a.cmd("EHLO client.test")
    assert a.auth_plain(login[0].username, login[1]).code == 235
    a.cmd("MAIL FROM:<app@example.com>")
    assert [a.cmd(f"RCPT TO:<r{i}@example.org>").code for i in range(12)] == [250] * 12


def test_the_mx_limit_never_exceeds_the_submission_limit(settings):
    from relay.server import RelayServer

    settings.SMTP_MAX_MESSAGE_SIZE = 1_000_000
    settings.SMTP_MX_MAX_SIZE = 5_000_000
    assert RelayServer([]).mx_max_size == 1_000_000
    settings.SMTP_MX_MAX_SIZE = 200_000
    assert RelayServer([]).mx_max_size == 200_000
