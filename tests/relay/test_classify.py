"""relay.classify: one row per rule of the table in docs/bounces.md."""
import pytest

from relay.classify import REASONS, classify, status_of

RULES = [
    # enhanced code alone decides
    (550, "5.1.1", "", "hard", "invalid_recipient"),
    (553, "5.1.3", "bad address syntax", "hard", "invalid_recipient"),
    (551, "5.1.6", "", "hard", "invalid_recipient"),
    (550, "5.1.2", "", "hard", "bad_domain"),
    (550, "5.4.4", "", "hard", "bad_domain"),
    (451, "4.4.4", "", "soft", "bad_domain"),
    (550, "5.2.1", "", "hard", "inactive_mailbox"),
    (552, "5.2.2", "", "soft", "mailbox_full"),
    (452, "4.2.2", "", "soft", "mailbox_full"),
    (552, "5.2.3", "", "soft", "policy"),
    (552, "5.3.4", "", "soft", "policy"),
    (None, "4.4.7", "", "soft", "message_expired"),
    (550, "5.7.26", "", "soft", "policy"),
    # generic codes: the text decides
    (550, "5.0.0", "Mailbox is full", "soft", "mailbox_full"),
    (550, "5.0.0", "account has been disabled", "hard", "inactive_mailbox"),
    (550, "5.7.1", "User unknown", "hard", "invalid_recipient"),
    (550, "5.1.10", "RESOLVER.ADR.RecipientNotFound; Recipient not found", "hard",
     "invalid_recipient"),
    (550, "5.1.10", "Recipient address has null MX", "hard", "bad_domain"),
    (550, "", "Host or domain name not found", "hard", "bad_domain"),
    (554, "5.7.1", "Message rejected as spam", "soft", "spam_block"),
    (550, "5.7.1", "Client host blocked using zen.spamhaus.org", "soft", "spam_block"),
    (550, "5.7.1", "Relaying denied", "soft", "policy"),
    (550, "5.7.0", "", "soft", "policy"),  # x.7.x without words: policy
    (421, "4.7.0", "Try again later, rate limited", "soft", "policy"),
    (550, "", "retry timeout exceeded", "soft", "message_expired"),
    (550, "", "something else entirely", "hard", "other"),
    (451, "", "local error in processing", "soft", "other"),
    # no code at all: only a clear word on the address is hard
    (None, "", "no such user here", "hard", "invalid_recipient"),
    (None, "", "something went wrong", "soft", "other"),
]


@pytest.mark.parametrize("code, enhanced, text, klass, reason", RULES)
def test_rule(code, enhanced, text, klass, reason):
    assert classify(code, enhanced, text) == (klass, reason)


def test_every_reason_has_a_row():
    assert {row[4] for row in RULES} == set(REASONS)


@pytest.mark.parametrize("code, text, status", [
    (550, "550 5.1.1 user unknown", "5.1.1"),
    (550, "550 user unknown", "5.0.0"),
    (451, "451 try later", "4.0.0"),
    (550, "550 4.2.2 contradicts the code", "5.0.0"),
    (None, "no code", ""),
])
def test_status_from_the_text_or_the_code(code, text, status):
    assert status_of(code, text) == status


def test_hostile_text_is_bounded():
    assert classify(550, "5." * 10_000, "a" * 1_000_000 + "user unknown") == ("hard", "other")
