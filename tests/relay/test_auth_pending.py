"""argon2 is not a CPU weapon against a real runsmtp: with 200 wrong AUTHs from 200 addresses
in flight, at most SMTP_AUTH_MAX_PENDING checks queue up, the rest get 454 4.7.0 at once, and
a login in the verified cache authenticates promptly all along."""
import threading
import time

import pytest
from django.db import connection

from .conftest import ACCEPT_ROLES, SERVER_ENV
from .smtp_helpers import LineClient, Server, b64
from .test_submission import authed

pytestmark = pytest.mark.django_db(transaction=True)
PENDING = 8
ATTACKERS = 200
NUL = "\0"


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, tls_files, tmp_path_factory):
    with django_db_blocker.unblock():
        connection.ensure_connection()
    server = Server(
        cert=tls_files[0], key=tls_files[1], workdir=tmp_path_factory.mktemp("runsmtp"),
        # Idle timeouts longer than opening 200 TLS connections may take on a busy machine.
        env_extra={**SERVER_ENV, "SMTP_AUTH_MAX_PENDING": str(PENDING),
                   "SMTP_IDLE_TIMEOUT": "120", "SMTP_PREAUTH_IDLE_TIMEOUT": "120"},
        roles=ACCEPT_ROLES,
    ).start()
    yield server
    server.stop()
    log = server.log_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]


def test_a_flood_of_wrong_auths_is_refused_at_once_and_cached_logins_pass(server, login):
    authed(server, login, server.tls_port, source_ip="127.0.15.1").close()  # now cached
    attackers = []
    for i in range(ATTACKERS):
        c = LineClient(server, server.tls_port, implicit_tls=True,
                       source_ip=f"127.0.{16 + i // 250}.{1 + i % 250}", timeout=120)
        c.cmd("EHLO attacker.test")
        attackers.append(c)
    # Unknown usernames: the server spends a full-cost argon2 check on each (as for a wrong
    # password), unless it refuses first.
    for i, c in enumerate(attackers):
        c.send(f"AUTH PLAIN {b64(f'{NUL}smtp-nobody{i}{NUL}x')}\r\n")
    started = time.monotonic()
    replies, answered = [], []

    def read_replies() -> None:  # in connection order: the checked ones came first
        replies.extend(c.reply() for c in attackers)
        answered.append(time.monotonic() - started)

    reader = threading.Thread(target=read_replies)
    reader.start()
    authed(server, login, server.tls_port, source_ip="127.0.15.2").close()
    cached_took = time.monotonic() - started
    reader.join()
    codes = [r.code for r in replies]
    assert set(codes) <= {454, 535}, codes
    # At most PENDING checks queue up (a few more get one as earlier ones finish while the
    # AUTH lines go out); without the bound, all 200 would run.
    assert codes.count(535) <= PENDING + 16, codes
    assert all(r.text.startswith("4.7.0 ") for r in replies if r.code == 454)
    assert "argon2 queue full" in server.log_text()
    # The cached login did not wait behind the pending checks.
    assert cached_took < answered[0], (cached_took, answered)
    for c in attackers:
        c.close()
    # Refusals are not failures: the same addresses are not throttled afterwards.
    c = LineClient(server, server.tls_port, implicit_tls=True, source_ip="127.0.16.199")
    c.cmd("EHLO client.test")
    assert c.auth_plain(login[0].username, login[1]).code == 235
