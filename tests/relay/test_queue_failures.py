"""Queue writes that fail on purpose (a database trigger): the session gets 451 4.3.0,
nothing half-written remains, and other sessions' messages are not affected.

These tests use a server of their own: a failed write is logged with its traceback, which the
shared server's "no Traceback" check would (rightly) refuse."""
import re
import time

import pytest
from django.db import connection, transaction

from relay.models import Message, Recipient

from .conftest import start_server
from .test_submission import authed

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def smtp_server(django_db_setup, django_db_blocker, tls_files, tmp_path_factory):
    server = start_server(django_db_blocker, tls_files, tmp_path_factory)
    yield server
    server.stop()


@pytest.fixture
def poisoned_recipient(transactional_db):
    """A database trigger that fails any insert of one recipient address."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "CREATE TRIGGER relay_test_poison BEFORE INSERT ON relay_recipient "
                "WHEN NEW.address = 'poison@example.org' "
                "BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
            )
        else:
            cursor.execute(
                "CREATE FUNCTION relay_test_poison() RETURNS trigger AS $$ BEGIN "
                "IF NEW.address = 'poison@example.org' THEN RAISE EXCEPTION 'poisoned'; "
                "END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER relay_test_poison BEFORE INSERT ON relay_recipient "
                "FOR EACH ROW EXECUTE FUNCTION relay_test_poison()"
            )
    yield "poison@example.org"
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER relay_test_poison" + (
            "" if connection.vendor == "sqlite" else " ON relay_recipient"))
        if connection.vendor != "sqlite":
            cursor.execute("DROP FUNCTION relay_test_poison()")


def test_a_failed_write_answers_451_and_leaves_nothing(smtp_server, login, poisoned_recipient):
    c = authed(smtp_server, login)
    c.cmd("MAIL FROM:<app@example.com>")
    c.cmd("RCPT TO:<fine@example.org>")
    c.cmd(f"RCPT TO:<{poisoned_recipient}>")
    c.cmd("DATA")
    c.send(b"Subject: poison\r\n\r\nx\r\n.\r\n")
    r = c.reply()
    assert (r.code, r.text[:6]) == (451, "4.3.0 ")
    assert not Message.objects.exists() and not Recipient.objects.exists()
    assert c.send_message(b"Subject: fine\r\n\r\nx\r\n", rcpt="fine@example.org").code == 250
    assert Message.objects.count() == 1


def test_one_bad_message_in_a_group_commit_fails_only_its_own_session(
    smtp_server, login, poisoned_recipient
):
    """Sessions whose messages share a batch with a failing one still get 250 (the batch is
    retried one message per transaction); only the failing session gets 451."""
    clients = []
    for i in range(8):
        c = authed(smtp_server, login)
        c.cmd("MAIL FROM:<app@example.com>")
        c.cmd(f"RCPT TO:<{poisoned_recipient if i == 5 else f'r{i}@example.org'}>")
        assert c.cmd("DATA").code == 354
        c.send(f"Subject: {i}\r\n\r\nbody {i}\r\n".encode())
        clients.append(c)
    # Hold the tables so that the writer waits: every message ends while it waits, and the
    # ones behind the first meet in one batch.
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT 1")  # BEGIN IMMEDIATE (settings) holds the write lock
        else:
            cursor.execute("LOCK TABLE relay_message IN SHARE ROW EXCLUSIVE MODE")
        for c in clients:
            c.send(b".\r\n")
        time.sleep(0.5)
    codes = [c.reply().code for c in clients]
    assert codes == [250] * 5 + [451] + [250] * 2
    assert Message.objects.count() == 7
    assert not Recipient.objects.filter(address=poisoned_recipient).exists()
    log = smtp_server.log_text()
    batches = [int(n) for n in re.findall(r"group commit of (\d+) message", log)]
    assert any(n > 1 for n in batches), batches
