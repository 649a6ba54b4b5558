"""X-SMTPeter-Tags from a client reach the database clean, on SQLite and on PostgreSQL (whose
jsonb refuses NUL): control and format characters removed, at most MAX_TAGS tags of at most
MAX_TAG_LENGTH characters. A poisoned header costs neither its message nor its neighbours."""
import smtplib
import threading

import pytest

from features.overrides import MAX_TAG_LENGTH, MAX_TAGS, clean_tags
from relay.models import Message

from .smtp_helpers import HOST
from .test_submission import authed

pytestmark = pytest.mark.django_db(transaction=True)


def message_with_tags(value: bytes) -> bytes:
    return b"Subject: tagged\r\nX-SMTPeter-Tags: " + value + b"\r\n\r\nbody\r\n"


@pytest.mark.parametrize("value, stored", [
    (b"a\x00b", ["ab"]),
    (b"\x00", []),
    (b"ok, \x1b[31mred\x1b[0m, tab\there, del\x7f", ["ok", "[31mred[0m", "tabhere", "del"]),
    ("rtl\u202eevil, zero\u200bwidth, caf\u00e9, \u0085nel".encode(),
     ["rtlevil", "zerowidth", "caf\u00e9", "nel"]),
    (b"dup, dup, other, dup", ["dup", "other"]),
])
def test_tags_are_cleaned_before_the_database(smtp_server, login, value, stored):
    c = authed(smtp_server, login)
    r = c.send_message(message_with_tags(value))
    assert r.code == 250, r
    assert Message.objects.get().tags == stored


def test_tags_are_capped_in_number_and_length(smtp_server, login):
    tags = [f"t{i}" for i in range(MAX_TAGS + 5)]
    c = authed(smtp_server, login)
    assert c.send_message(message_with_tags(", ".join(tags).encode())).code == 250
    assert Message.objects.get().tags == tags[:MAX_TAGS]
    c.cmd("RSET")
    assert c.send_message(message_with_tags(b"y" * 900 + b", z")).code == 250
    assert Message.objects.latest("id").tags == ["y" * MAX_TAG_LENGTH, "z"]


def test_a_poisoned_header_does_not_slow_its_neighbours(smtp_server, login):
    """Clean and poisoned messages committed together: every one is stored, in one batch."""
    codes = []

    def send(n: int) -> None:
        with smtplib.SMTP_SSL(HOST, smtp_server.tls_port,
                              context=smtp_server.client_context()) as s:
            s.login(login[0].username, login[1])
            for i in range(10):
                tag = b"a\x00b" if n % 2 else b"clean"
                codes.append(s.sendmail("app@example.com", ["bob@example.org"],
                                        message_with_tags(tag + str(i).encode())))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [{}] * 40
    assert Message.objects.count() == 40
    assert "retrying one by one" not in smtp_server.log_text()


def test_clean_tags_keeps_order_and_ordinary_text():
    assert clean_tags(["  spaced out ", "Ünïcode ✓", "emoji 🎉"]) == [
        "spaced out", "Ünïcode ✓", "emoji 🎉"]
