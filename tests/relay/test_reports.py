"""relay.reports.parse_report on samples written for the tests (tests/relay/bounce_samples.py):
RFC 3464 and RFC 5965 examples, the text shapes of common servers, SES JSON, auto-replies."""
import json

import pytest

from relay.reports import Report, parse_report

from . import bounce_samples as s


def only(report: Report):
    assert len(report.recipients) == 1, report.recipients
    return report.recipients[0]


def test_rfc3464_simple_dsn_every_field():
    report = parse_report(s.RFC3464_SIMPLE)
    assert (report.type, report.source, report.reporting_mta) == ("bounce", "rfc3464",
                                                                   "cs.utk.edu")
    r = only(report)
    assert r.address == "louisl@larry.slip.umd.edu"
    assert r.original_recipient == "louisl@larry.slip.umd.edu"
    assert (r.action, r.status, r.class_) == ("failed", "4.0.0", "soft")
    assert r.diagnostic == "426 connection timed out"
    assert r.last_attempt == "Thu, 7 Jul 1994 17:15:49 -0400"
    assert report.original.return_path == s.VERP
    assert report.original.message_id == "orig-1@shop.example"
    assert report.original.subject == "Interoperability test"


def test_rfc3464_every_per_recipient_block():
    report = parse_report(s.RFC3464_MULTI)
    got = [(r.address, r.action, r.status, r.class_, r.reason, r.remote_mta)
           for r in report.recipients]
    assert got == [
        ("arathib@vnet.ibm.com", "failed", "5.0.0", "hard", "other", "vnet.ibm.com"),
        ("johnh@hpnjld.njd.hp.com", "delayed", "4.0.0", "soft", "other", ""),
        ("wsnell@sdcc13.ucsd.edu", "failed", "5.0.0", "hard", "invalid_recipient",
         "sdcc13.ucsd.edu"),
    ]
    # a folded Diagnostic-Code is one line of the server's words
    assert report.recipients[0].diagnostic == (
        "550 'arathib@vnet.IBM.COM' is not a registered gateway user")


def test_report_nested_in_multipart_mixed_with_headers_only():
    report = parse_report(s.NESTED)
    r = only(report)
    assert (report.type, r.address, r.remote_mta) == ("bounce", "full@example.org",
                                                       "mx.example.org")
    # Status 5.0.0 is generic: the code in the server's words is the one that counts
    assert (r.status, r.class_, r.reason) == ("5.2.2", "soft", "mailbox_full")
    assert report.original.return_path == s.VERP


def test_global_delivery_status_utf8_address():
    report = parse_report(s.GLOBAL_DSN)
    r = only(report)
    assert r.address == "jos\u00e9@b\u00fccher.example"
    assert (r.status, r.class_, r.reason) == ("5.1.1", "hard", "invalid_recipient")
    assert report.original.return_path == s.VERP


def test_delivered_and_relayed_are_a_delivery_notice_not_a_bounce():
    report = parse_report(s.DELIVERED)
    assert report.type == "delivery"
    assert [(r.address, r.action, r.class_) for r in report.recipients] == [
        ("rcpt@example.org", "delivered", ""), ("other@example.org", "relayed", "")]


@pytest.mark.parametrize("raw, expected", [
    (s.POSTFIX_TEXT, [("nobody@example.org", "5.1.1", "hard", "invalid_recipient",
                       "mx.example.org"),
                      ("gone@nxdomain.example", "5.0.0", "hard", "bad_domain", "")]),
    (s.EXIM, [("quota@example.org", "4.2.2", "soft", "mailbox_full", "mx.example.org")]),
    (s.QMAIL, [("unknown@example.org", "5.1.1", "hard", "invalid_recipient", "")]),
    (s.EXCHANGE, [("rcpt@contoso.example", "5.1.10", "hard", "invalid_recipient",
                   "EX01.contoso.example")]),
    (s.GMAIL, [("blocked@example.org", "5.7.1", "soft", "spam_block", "mx1.example.org")]),
    (s.SENDMAIL_TEXT, [("disabled@example.org", "5.2.1", "hard", "inactive_mailbox",
                        "mx.example.org")]),
    (s.JAPANESE, [("keitai@carrier.example.jp", "5.1.1", "hard", "invalid_recipient", "")]),
    (s.SENDMAIL_ARROWS, [("left@example.org", "5.0.0", "hard", "invalid_recipient", "")]),
    (s.EXCHANGE_OLD, [("olduser@old.example", "5.0.0", "hard", "invalid_recipient", "")]),
    (s.BULLETED, [("far@example.org", "5.0.0", "hard", "other", "")]),
    (s.DELIVERY_FAILED_LINE, [("looped@example.org", "5.4.14", "hard", "other", "")]),
], ids=["postfix", "exim", "qmail", "exchange", "gmail", "sendmail", "japanese",
        "sendmail-arrows", "exchange-5.5", "bulleted", "delivery-failed-line"])
def test_text_bounces(raw, expected):
    report = parse_report(raw)
    assert (report.type, report.source) == ("bounce", "text")
    got = [(r.address, r.status, r.class_, r.reason, r.remote_mta) for r in report.recipients]
    assert got == expected
    assert all(r.diagnostic for r in report.recipients)
    if raw not in (s.JAPANESE, s.EXCHANGE_OLD, s.BULLETED, s.DELIVERY_FAILED_LINE):
        assert report.original.return_path == s.VERP  # the copy after the cut line


def test_a_multipart_report_without_its_boundary_is_read_as_one_text():
    report = parse_report(s.NO_BOUNDARY)
    assert report.type == "bounce"
    assert [(r.address, r.status, r.action) for r in report.recipients] == [
        ("piped@mail.example.edu", "5.5.0", "failed")]


def test_text_bounce_keeps_the_server_words_and_the_alias():
    r, alias = parse_report(s.POSTFIX_TEXT).recipients
    assert alias.original_recipient == "alias@example.org"
    assert "Recipient address rejected: User unknown in virtual mailbox table" in r.diagnostic


def test_ses_bounce_json_plain_and_inside_sns():
    for body in (json.dumps(s.SES_BOUNCE),
                 json.dumps({"Type": "Notification", "Message": json.dumps(s.SES_BOUNCE)},
                            indent=2)):
        report = parse_report(s.ses_mail(body))
        r = only(report)
        assert (report.type, report.source) == ("bounce", "ses-json")
        assert (r.address, r.status, r.class_, r.reason) == ("ses@example.org", "5.1.1",
                                                              "hard", "invalid_recipient")
        assert r.diagnostic == "550 5.1.1 user unknown"
        assert report.original.return_path == s.VERP


def test_ses_complaint_json():
    report = parse_report(s.ses_mail(json.dumps(s.SES_COMPLAINT)))
    assert (report.type, report.feedback_type) == ("complaint", "abuse")
    assert [r.address for r in report.recipients] == ["angry@example.org"]


def test_arf_rfc5965_example():
    report = parse_report(s.ARF_RFC)
    assert (report.type, report.feedback_type, report.source) == ("complaint", "abuse", "arf")
    arf = report.arf
    assert (arf.source_ip, arf.original_rcpt_to, arf.original_mail_from, arf.reported_domain,
            arf.user_agent) == ("192.0.2.1", "user@example.com", "somespammer@example.net",
                                "example.net", "SomeGenerator/1.0")
    assert arf.arrival_date == "Thu, 8 Mar 2005 14:00:00 EDT"
    assert [r.address for r in report.recipients] == ["user@example.com"]
    assert report.original.subject == "Earn money"
    assert report.original.message_id == "8787KJKJ3K4J3K4J3K4J3.mail@example.net"


def test_arf_from_provider_links_through_verp_and_to():
    report = parse_report(s.ARF_PROVIDER)
    assert (report.type, report.feedback_type) == ("complaint", "abuse")
    assert report.arf.source_ip == "203.0.113.5"
    assert report.original.return_path == s.VERP
    assert report.original.message_id == "orig-1@shop.example"
    # Original-Rcpt-To redacted: the reported message's single To names the complainer
    assert [r.address for r in report.recipients] == ["reader@bigmail.example"]


@pytest.mark.parametrize("raw", [s.VACATION, s.X_AUTOREPLY, s.OOO_SUBJECT_ONLY],
                         ids=["auto-submitted", "x-autoreply", "subject"])
def test_auto_replies_are_not_bounces(raw):
    report = parse_report(raw)
    assert (report.type, report.recipients) == ("auto-reply", [])
    assert report.subject


def test_exim_bounce_marked_auto_replied_is_still_a_bounce():
    assert parse_report(s.EXIM).type == "bounce"


def test_a_human_reply_is_unknown():
    assert parse_report(s.PLAIN_REPLY).type == "unknown"
