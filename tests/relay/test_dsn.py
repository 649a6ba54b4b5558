"""relay.dsn: every report kind parsed back by the email package (each field RFC 3464 requires,
and the ones we promise) and by flufl.bounce as an outside reader; hostile inputs."""
import email
import email.policy
import re
from datetime import UTC, datetime, timedelta

import pytest
from flufl.bounce import all_failures, scan_message
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.dsn import ACTIONS, DsnRecipient, build_dsn, dsn_wanted

ARRIVAL = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
ATTEMPT = ARRIVAL + timedelta(minutes=5)
ORIGINAL = (b"From: Alice <alice@sender.test>\r\nTo: bob@rcpt.test\r\nSubject: Hello\r\n"
            b"Message-ID: <m1@sender.test>\r\n\r\nThe body.\r\n.\r\nMore body.\r\n")


def recipient(action, address="bob@rcpt.test", **kw):
    status = {"failed": "5.1.1", "delayed": "4.2.0"}.get(action, "2.0.0")
    diagnostic = {"failed": "550 5.1.1 No such user here",
                  "delayed": "451 4.2.0 Mailbox busy"}.get(action, "250 2.0.0 Ok: queued")
    values = dict(final_recipient=address, action=action, status=status,
                  original_recipient=f"rfc822;{address}", remote_mta="mx.rcpt.test",
                  diagnostic=diagnostic, last_attempt=ATTEMPT)
    if action == "delayed":
        values["will_retry_until"] = ARRIVAL + timedelta(days=1)
    values.update(kw)
    return DsnRecipient(**values)


def build(recipients, **kw):
    values = dict(reporting_mta="relay.smtpeter.test", original_sender="alice@sender.test",
                  recipients=recipients, original=ORIGINAL, arrival_date=ARRIVAL,
                  envid="env-1")
    values.update(kw)
    return build_dsn(**values)


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def status_blocks(msg):
    [part] = [p for p in msg.walk() if p.get_content_type() == "message/delivery-status"]
    return part.get_payload()


def crlf_only(raw):
    return re.search(rb"(?<!\r)\n", raw) is None and re.search(rb"\r(?!\n)", raw) is None


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("ret", ["", "HDRS", "FULL"])
def test_every_kind_has_the_rfc_3464_fields(action, ret):
    raw = build([recipient(action), recipient(action, "carol@rcpt.test")], ret=ret)
    assert crlf_only(raw)
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@relay.smtpeter.test>"
    assert b"\r\nTo: <alice@sender.test>\r\n" in raw and msg["To"] == "alice@sender.test"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Message-ID"].endswith("@relay.smtpeter.test>") and msg["Date"] and msg["Subject"]
    parts = msg.get_payload()
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status",
        "message/rfc822" if ret == "FULL" else "text/rfc822-headers"]

    text = parts[0].get_content()
    assert "<bob@rcpt.test>:" in text and "<carol@rcpt.test>:" in text
    assert "mx.rcpt.test said: " in text
    assert {"failed": "will not be tried again", "delayed": "being retried",
            "delivered": "was delivered", "relayed": "does not send delivery reports"}[
        action] in text

    per_message, *per_rcpt = status_blocks(msg)
    assert per_message["Reporting-MTA"] == "dns; relay.smtpeter.test"  # required
    assert per_message["Original-Envelope-Id"] == "env-1"
    assert per_message["Arrival-Date"] == "Sun, 29 Nov 2026 10:00:00 +0000"
    assert len(per_rcpt) == 2
    for block, address in zip(per_rcpt, ["bob@rcpt.test", "carol@rcpt.test"], strict=True):
        assert block["Final-Recipient"] == f"rfc822; {address}"  # required
        assert block["Action"] == action  # required
        assert block["Status"] == recipient(action).status  # required
        assert block["Original-Recipient"] == f"rfc822;{address}"
        assert block["Remote-MTA"] == "dns; mx.rcpt.test"
        assert block["Diagnostic-Code"] == f"smtp; {recipient(action).diagnostic}"
        assert block["Last-Attempt-Date"] == "Sun, 29 Nov 2026 10:05:00 +0000"
        if action == "delayed":
            assert block["Will-Retry-Until"] == "Mon, 30 Nov 2026 10:00:00 +0000"
        else:
            assert block["Will-Retry-Until"] is None

    if ret == "FULL":
        returned = parts[2].get_payload()[0]
        assert returned["Subject"] == "Hello" and "More body." in returned.get_content()
        assert raw.count(b"\r\n.\r\nMore body.\r\n") == 1
    else:
        headers = parts[2].get_payload()
        assert "Subject: Hello" in headers and "The body" not in headers


@pytest.mark.parametrize("ret", ["", "HDRS", "FULL"])
def test_flufl_bounce_finds_the_failed_recipient(ret):
    raw = build([recipient("failed"), recipient("delivered", "carol@rcpt.test")], ret=ret)
    # flufl.bounce reads compat32 messages (FACTS.md: 6-9x faster) and the default policy.
    for msg in (email.message_from_bytes(raw), parse(raw)):
        assert scan_message(msg) == {b"bob@rcpt.test"}
    temporary, permanent = all_failures(email.message_from_bytes(
        build([recipient("delayed")])))
    assert temporary == {b"bob@rcpt.test"} and permanent == set()


def test_no_envid_no_orcpt_no_remote_mta():
    r = DsnRecipient("bob@rcpt.test", "failed", "5.1.2",
                     diagnostic="550 5.1.2 domain rcpt.test does not exist (NXDOMAIN)")
    msg = parse(build([r], envid=""))
    per_message, block = status_blocks(msg)
    assert per_message["Original-Envelope-Id"] is None
    assert block["Original-Recipient"] is None and block["Remote-MTA"] is None
    assert block["Status"] == "5.1.2"
    assert "the mail system said: 550 5.1.2 domain" in msg.get_payload()[0].get_content()


def test_ret_full_over_the_limit_returns_the_header_and_says_so():
    big = ORIGINAL + b"x" * 2000 + b"\r\n"
    msg = parse(build([recipient("failed")], ret="FULL", original=big, max_full_size=1000))
    assert msg.get_payload()[2].get_content_type() == "text/rfc822-headers"
    assert f"Your message was {len(big)} bytes, too large" in msg.get_payload()[0].get_content()


def test_huge_header_is_cut_on_a_line_boundary():
    original = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"y" * 60) for i in range(3000)) + \
        b"\r\nbody\r\n"
    raw = build([recipient("failed")], original=original, max_header_size=10_000)
    headers = parse(raw).get_payload()[2].get_payload()
    assert 9_000 < len(headers) <= 10_002 and headers.rstrip().endswith("y" * 60)
    assert "X-Filler-0:" in headers and "X-Filler-2999" not in headers


def test_bare_lf_original_becomes_crlf():
    raw = build([recipient("failed")], original=b"Subject: lf\n\nline\nline\n", ret="FULL")
    assert crlf_only(raw)
    assert parse(raw).get_payload()[2].get_payload()[0]["Subject"] == "lf"


def test_the_remote_server_cannot_add_header_lines():
    evil = "550 no\r\nAction: delivered\r\nX-Evil: 1\x00\u00e9"
    raw = build([recipient("failed", diagnostic=evil, remote_mta="mx\r\nX-Evil: 2",
                           original_recipient="rfc822;a\r\nX-Evil: 3@x")],
                envid="e\r\nX-Evil: 4")
    assert b"\r\nX-Evil" not in raw and b"\r\nAction: delivered" not in raw
    _, block = status_blocks(parse(raw))
    assert block["Action"] == "failed"
    assert block["Diagnostic-Code"] == "smtp; 550 no??Action: delivered??X-Evil: 1??"


def test_status_field_is_always_a_status_code():
    msg = parse(build([recipient("failed", status="bogus")]))
    assert status_blocks(msg)[1]["Status"] == "5.0.0"


def test_mixed_outcomes_take_the_worst_subject_and_each_its_intro():
    msg = parse(build([recipient("delivered"), recipient("failed", "carol@rcpt.test")]))
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    text = msg.get_payload()[0].get_content()
    assert text.index("could not be delivered") < text.index("was delivered to")


def test_bad_calls():
    with pytest.raises(ValueError):
        build([])
    with pytest.raises(ValueError):
        build([recipient("failed")], original_sender="")
    with pytest.raises(ValueError):
        build([recipient("expanded")])


@pytest.mark.parametrize("notify, outcome, wanted", [
    ("", "failed", True), ("", "delayed", False), ("", "delivered", False),
    ("", "relayed", False),
    ("FAILURE", "failed", True), ("SUCCESS", "failed", False),
    ("SUCCESS,DELAY", "delayed", True), ("FAILURE", "delayed", False),
    ("SUCCESS", "delivered", True), ("SUCCESS", "relayed", True),
    ("failure,success", "delivered", True), ("DELAY", "delivered", False),
    ("NEVER", "failed", False), ("NEVER", "delayed", False), ("NEVER", "delivered", False),
])
def test_dsn_wanted(notify, outcome, wanted):
    assert dsn_wanted(notify, outcome) is wanted


def test_dsn_wanted_unknown_outcome():
    with pytest.raises(ValueError):
        dsn_wanted("", "bounced")


text_value = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=300)


@settings(max_examples=150, deadline=None)
@given(
    action=st.sampled_from(ACTIONS), diagnostic=text_value, remote=text_value, envid=text_value,
    address=text_value, orcpt=text_value, ret=st.sampled_from(["", "HDRS", "FULL"]),
    subject=text_value, body=st.binary(max_size=3000), limit=st.integers(0, 4000),
)
def test_odd_inputs_still_give_a_parseable_report(action, diagnostic, remote, envid, address,
                                                   orcpt, ret, subject, body, limit):
    original = b"Subject: " + subject.encode("utf-8") + b"\r\nX-Raw: \xff\xfe\r\n\r\n" + body
    r = DsnRecipient(address or "x@y.test", action, "5.1.1", orcpt and f"rfc822;{orcpt}",
                     remote, diagnostic, ATTEMPT, ATTEMPT)
    raw = build([r], original=original, envid=envid, ret=ret, max_full_size=limit)
    assert crlf_only(raw)
    head, _, _ = raw.partition(b"\r\n\r\n")
    head.decode("ascii")  # our header is ASCII whatever came in
    msg = parse(raw)
    parts = msg.get_payload()
    assert len(parts) == 3
    full = ret == "FULL" and len(original) <= limit
    assert parts[2].get_content_type() == ("message/rfc822" if full else "text/rfc822-headers")
    per_message, block = status_blocks(msg)
    assert block["Action"] == action and per_message["Reporting-MTA"]
    assert len(status_blocks(msg)) == 2  # nobody's text made another recipient block
    compat = email.message_from_bytes(raw)
    if action == "failed":
        assert scan_message(compat)
