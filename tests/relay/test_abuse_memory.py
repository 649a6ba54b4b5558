"""What clients without AUTH may hold in a real runsmtp: bytes of DATA in memory, all
sessions together (SMTP_UNAUTH_DATA_BUDGET), and connections per IP
(SMTP_MAX_UNAUTH_CONNECTIONS_PER_IP)."""
import time

import pytest
from django.db import connection

from relay.models import Message

from .conftest import ACCEPT_ROLES, SERVER_ENV
from .smtp_helpers import LineClient, Server
from .test_submission import authed, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

BUDGET = 1_000_000
BIG = b"Subject: a bounce\r\n\r\n" + (b"x" * 98 + b"\r\n") * 4000  # 400 KB


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, tls_files, tmp_path_factory):
    with django_db_blocker.unblock():
        connection.ensure_connection()
    server = Server(
        cert=tls_files[0], key=tls_files[1], workdir=tmp_path_factory.mktemp("runsmtp"),
        env_extra={**SERVER_ENV, "SMTP_MAX_MESSAGE_SIZE": "1000000", "SMTP_MX_MAX_SIZE": "500000",
                   "SMTP_UNAUTH_DATA_BUDGET": str(BUDGET),
                   "SMTP_MAX_UNAUTH_CONNECTIONS_PER_IP": "3"},
        roles=ACCEPT_ROLES,
    ).start()
    yield server
    server.stop()
    log = server.log_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]


def bounce_in_data(server: Server, ip: str, size: str = "") -> LineClient:
    """An mx session without AUTH, after 354, from ``ip``."""
    c = LineClient(server, server.mx_port, source_ip=ip)
    assert c.cmd("EHLO mta.example.net").code == 250
    assert c.cmd(f"MAIL FROM:<>{size}").code == 250
    assert c.cmd("RCPT TO:<postmaster@bounces.test>").code == 250
    assert c.cmd("DATA").code == 354
    return c


def held_by(clients: list[LineClient], body: bytes = BIG) -> None:
    """Each client sends ``body`` (without the final dot); the server has read it after."""
    for c in clients:
        c.send(body)
    time.sleep(1.0)


def finish(clients: list[LineClient]) -> list:
    for c in clients:
        c.send(b".\r\n")
    return [c.reply() for c in clients]


def test_bodies_past_the_budget_get_452_and_the_budget_comes_back(server):
    clients = [bounce_in_data(server, f"127.0.1.{i}") for i in range(1, 5)]
    held_by(clients)
    replies = finish(clients)
    codes = sorted(r.code for r in replies)
    # Four 400 KB bodies held at once would be 1.6 MB: at most two fit in 1 MB.
    assert set(codes) <= {250, 452} and codes.count(250) in (1, 2) and codes.count(452) >= 2
    assert all(r.text.startswith("4.3.1 ") for r in replies if r.code == 452), replies
    assert "would pass SMTP_UNAUTH_DATA_BUDGET" in server.log_text()
    assert Message.objects.count() == codes.count(250)
    for c in clients:  # the sessions go on
        assert c.cmd("NOOP").code == 250
        c.close()

    # A client that goes away in the middle of its DATA gives its bytes back too.
    gone = bounce_in_data(server, "127.0.1.5")
    held_by([gone])
    gone.close()
    time.sleep(0.5)
    again = [bounce_in_data(server, f"127.0.1.{i}") for i in (6, 7)]
    held_by(again)
    assert [r.code for r in finish(again)] == [250, 250]


def test_a_declared_size_that_does_not_fit_gets_452_at_mail(server):
    holding = [bounce_in_data(server, f"127.0.2.{i}") for i in (1, 2)]
    held_by(holding)  # 800 KB of 1 MB held
    c = LineClient(server, server.mx_port, source_ip="127.0.2.3")
    c.cmd("EHLO mta.example.net")
    r = c.cmd("MAIL FROM:<> SIZE=400000")
    assert (r.code, r.text[:6]) == (452, "4.3.1 "), r
    assert c.cmd("MAIL FROM:<> SIZE=50000").code == 250
    assert [r.code for r in finish(holding)] == [250, 250]
    assert c.cmd("RSET").code == 250
    assert c.cmd("MAIL FROM:<> SIZE=400000").code == 250  # room again


def test_authenticated_submissions_are_not_charged(server, login):
    holding = [bounce_in_data(server, f"127.0.3.{i}") for i in (1, 2)]
    held_by(holding)
    c = authed(server, login)
    assert c.send_message(BIG).code == 250  # 1.2 MB held together with the two bounces
    assert [r.code for r in finish(holding)] == [250, 250]


def test_connections_without_auth_per_ip_are_capped_lower(server, login):
    ip = "127.0.4.1"
    sessions = [authed(server, login, source_ip=ip) for _ in range(6)]  # over 3: no cap
    waiting = [LineClient(server, server.starttls_port, source_ip=ip) for _ in range(3)]
    waiting.append(LineClient(server, server.mx_port, source_ip=ip))
    assert [c.greeting.code for c in waiting] == [220, 220, 220, 421]
    assert waiting[3].greeting.text.startswith("4.7.0 ")
    assert "too many unauthenticated connections from this IP" in server.log_text()
    # An AUTH moves a connection out of the unauthenticated count: room for one more.
    c = waiting[0]
    c.cmd("EHLO client.test")
    c.starttls()
    c.cmd("EHLO client.test")
    assert c.auth_plain(login[0].username, login[1]).code == 235
    one_more = LineClient(server, server.mx_port, source_ip=ip)
    assert one_more.greeting.code == 220
    assert LineClient(server, server.mx_port, source_ip=ip).greeting.code == 421
    # Closing gives the places back.
    for c in sessions + waiting + [one_more]:
        c.close()

    def three_fit() -> bool:
        fresh = [LineClient(server, server.mx_port, source_ip=ip) for _ in range(3)]
        for c in fresh:
            c.close()
        return all(c.greeting.code == 220 for c in fresh)

    assert wait_for(three_fit)
