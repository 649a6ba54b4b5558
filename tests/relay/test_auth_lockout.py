"""Who a failed AUTH locks out, against a real runsmtp (SMTP_AUTH_MAX_FAILURES=3): guessing is
counted per (IP, username), stuffing per IP over distinct usernames; a right password for a
login that is not itself under attack from that address still authenticates."""
import pytest

from credentials import services

from .smtp_helpers import LineClient
from .test_submission import authed

pytestmark = pytest.mark.django_db(transaction=True)


def tls_client(server, ip: str) -> LineClient:
    c = LineClient(server, server.tls_port, implicit_tls=True, source_ip=ip)
    assert c.cmd("EHLO client.test").code == 250
    return c


def test_a_misconfigured_app_does_not_lock_out_its_neighbour_behind_the_same_nat(
        smtp_server, login, alice):
    broken, _ = services.create_login(alice)  # its application has an old password
    nat = "127.0.10.1"
    c = tls_client(smtp_server, nat)
    assert [c.auth_plain(broken.username, "old-password").code for _ in range(4)] == [
        535, 535, 535, 454]
    # The working application's login was never verified in this process (no cache).
    authed(smtp_server, login, smtp_server.tls_port, source_ip=nat).close()
    assert "verified=argon2" in smtp_server.log_text().rsplit("AUTH ok", 1)[1]


def test_failures_from_other_addresses_do_not_lock_a_login(smtp_server, login):
    for i in range(4):  # more failures for this username than the limit, from four addresses
        c = tls_client(smtp_server, f"127.0.11.{i}")
        assert c.auth_plain(login[0].username, "guess").code == 535
    authed(smtp_server, login, smtp_server.tls_port, source_ip="127.0.11.9").close()


def test_guessing_from_one_address_locks_that_username_there_only(smtp_server, login):
    c = tls_client(smtp_server, "127.0.12.1")
    for _ in range(3):
        assert c.auth_plain(login[0].username, "guess").code == 535
    # Under attack from this address: even the right password is refused here...
    r = c.auth_plain(login[0].username, login[1])
    assert (r.code, r.text[:6]) == (454, "4.7.0 "), r
    assert (f"AUTH throttled: ip=127.0.12.1 username='{login[0].username}' (too many failures "
            "for this username from this IP)") in smtp_server.log_text()
    # ...and nowhere else.
    authed(smtp_server, login, smtp_server.tls_port, source_ip="127.0.12.2").close()


def test_stuffing_from_one_address_stops_argon2_but_verified_pairs_pass(smtp_server, login,
                                                                       alice):
    authed(smtp_server, login, smtp_server.tls_port, source_ip="127.0.13.9").close()  # cached
    fresh, fresh_pw = services.create_login(alice)  # right password, never verified
    c = tls_client(smtp_server, "127.0.13.1")
    for i in range(3):
        assert c.auth_plain(f"smtp-leaked{i}", "pw").code == 535
    assert c.auth_plain("smtp-leaked3", "pw").code == 454
    assert "(failures for too many usernames from this IP" in smtp_server.log_text()
    # A pair already verified still passes from this address; one that would need argon2 not.
    assert c.auth_plain(login[0].username, login[1]).code == 235
    other = tls_client(smtp_server, "127.0.13.1")
    assert other.auth_plain(fresh.username, fresh_pw).code == 454
    authed(smtp_server, (fresh, fresh_pw), smtp_server.tls_port, source_ip="127.0.13.2").close()
