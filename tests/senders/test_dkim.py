"""senders.dkim.sign: every signature verifies with dkimpy and with Mail::DKIM against keys in a
test DNS server; a message changed after signing does not."""
import pytest
from dkim.canonicalization import CanonicalizationPolicy
from hypothesis import given, settings
from hypothesis import strategies as st

from senders.dkim import (
    SigningError,
    from_domain,
    header_list,
    relaxed_body,
    sign,
    strip_signatures,
)

from .verify import dkimpy_results, perl_results

MESSAGE = (
    b"From: Shop <news@example.com>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: Our =?utf-8?q?sp=C3=A9cial?= offer\r\n"
    b"Date: Sun, 29 Nov 2026 21:00:00 +0000\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"List-Unsubscribe: <https://example.com/u/1>\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=old;\r\n"
    b"\tbh=AAAA; b=BBBB\r\n"
    b"\r\n"
    b"<p>Hello   there</p>  \r\n\r\n\r\n"
)


def test_rsa_and_ed25519_signatures_verify_with_dkimpy_and_mail_dkim(dns_server, published):
    signed = sign(MESSAGE, published)
    assert signed.count(b"DKIM-Signature:") == 2  # the customer's own one is gone
    assert b"s=old" not in signed
    assert dkimpy_results(signed, dns_server.nameserver) == [("example.com", True)] * 2
    overall, sigs = perl_results(signed, dns_server.nameserver)
    assert overall == "pass", sigs
    by_algorithm = {s[2]: s[3] for s in sigs}
    assert by_algorithm["rsa-sha256"] == "pass"
    # Debian 12's Mail::DKIM (1.20230212) predates its ed25519-sha256 support: it calls that
    # signature "invalid (unsupported algorithm)", which RFC 6376 6.1 reads as no signature;
    # the RSA one carries the result. A newer Mail::DKIM must pass it.
    assert by_algorithm["ed25519-sha256"] in ("pass", "invalid")


@pytest.mark.parametrize("change", [
    lambda m: m.replace(b"Hello", b"Hallo"),  # body
    lambda m: m.replace(b"Subject: Our", b"Subject: Your"),  # a signed header
    lambda m: m.replace(b"\r\n\r\n<p>", b"\r\nFrom: evil@example.net\r\n\r\n<p>"),  # added From
    lambda m: m.replace(b"\r\n\r\n<p>", b"\r\nReply-To: evil@example.net\r\n\r\n<p>"),  # absent
])
def test_a_message_changed_after_signing_fails_both_verifiers(dns_server, published, change):
    signed = sign(MESSAGE, published[:1])
    changed = change(signed)
    assert changed != signed
    assert dkimpy_results(changed, dns_server.nameserver) == [("example.com", False)]
    overall, sigs = perl_results(changed, dns_server.nameserver)
    assert overall == "fail", sigs


def test_relaxed_canonicalisation_survives_whitespace_changes_in_transit(dns_server, published):
    signed = sign(MESSAGE, published[:1])
    refolded = signed.replace(b"Subject: Our", b"Subject:   Our").replace(b"there</p>  ",
                                                                         b"there</p>")
    assert dkimpy_results(refolded, dns_server.nameserver) == [("example.com", True)]
    assert perl_results(refolded, dns_server.nameserver)[0] == "pass"


def test_headers_are_signed_once_more_than_they_occur():
    head = b"From: a@x.test\r\nTo: b@y.test\r\nTo: c@y.test\r\nX-Other: 1\r\n"
    names = header_list(head)
    assert names.count(b"from") == 2 and names.count(b"to") == 3
    assert names.count(b"list-unsubscribe") == 1  # absent: named once, so none can be added
    assert b"x-other" not in names


def test_existing_signatures_and_their_folded_lines_are_removed():
    head = (b"DKIM-Signature: v=1;\r\n\tb=abc\r\nFrom: a@x.test\r\n"
            b"dkim-signature:v=1;\r\n b=def\r\nTo: b@y.test\r\n")
    assert strip_signatures(head) == b"From: a@x.test\r\nTo: b@y.test\r\n"


def test_a_message_without_from_is_not_signed(published):
    with pytest.raises(SigningError, match="no From"):
        sign(b"To: b@y.test\r\n\r\nbody\r\n", published)


@pytest.mark.parametrize(("message", "domain"), [
    (MESSAGE, "example.com"),
    (b"from: \"A, B\" <a@Sub.Example.COM>, c@other.test\r\n\r\n", "sub.example.com"),
    (b"From:\r\n x@folded.test\r\n\r\n", "folded.test"),
    (b"To: b@y.test\r\n\r\nFrom: a@body.test\r\n", ""),
])
def test_from_domain(message, domain):
    assert from_domain(message) == domain


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b" ", b"\t", b"\r\n", b"a", b"b c", b"  ", b"\t \t", b"x\r\n"]),
                max_size=40))
def test_the_fast_relaxed_body_agrees_with_dkimpy(parts):
    body = b"".join(parts)
    assert relaxed_body(body) == CanonicalizationPolicy.from_c_value(
        b"relaxed/relaxed").canonicalize_body(body)
