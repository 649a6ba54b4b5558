"""parse_report never raises and stays bounded on hostile input: random and mutated bytes
(hypothesis), MIME bombs, and the hostile HTML shapes of tests/features/corpus.py."""
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.reports import MAX_RECIPIENTS, Report, parse_report
from tests.features.corpus import HOSTILE

from . import bounce_samples as s

SAMPLES = [s.RFC3464_MULTI, s.NESTED, s.POSTFIX_TEXT, s.EXIM, s.QMAIL, s.EXCHANGE, s.GMAIL,
           s.ARF_RFC, s.ARF_PROVIDER, s.VACATION, s.JAPANESE, s.GLOBAL_DSN]
LIMIT_S = 10.0  # catastrophic cases take minutes; a loaded 2-core machine needs the slack


def timed(raw: bytes) -> Report:
    t0 = time.perf_counter()
    report = parse_report(raw)
    assert time.perf_counter() - t0 < LIMIT_S
    assert isinstance(report, Report)
    assert report.type in ("bounce", "complaint", "auto-reply", "delivery", "unknown")
    assert len(report.recipients) <= MAX_RECIPIENTS
    return report


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_random_bytes(raw):
    timed(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SAMPLES), st.lists(st.tuples(st.integers(0, 10**6), st.binary(max_size=8),
                                                    st.integers(0, 40)), max_size=8))
def test_mutated_samples(raw, edits):
    data = bytearray(raw)
    for pos, insert, cut in edits:
        pos %= max(len(data), 1)
        data[pos:pos + cut] = insert
    timed(bytes(data))


def test_not_bytes_is_unknown():
    assert parse_report("a str").type == "unknown"  # type: ignore[arg-type]


def nested_multipart(levels: int) -> bytes:
    head = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
                    for i in range(levels))
    return b"From: MAILER-DAEMON@x.example\r\nSubject: Undeliverable\r\n" + head + b"x\r\n"


def many_dsn_blocks(n: int) -> bytes:
    blocks = "".join(f"Final-Recipient: rfc822; u{i}@example.org\r\nAction: failed\r\n"
                     f"Status: 5.1.1\r\n\r\n" for i in range(n))
    return (b"Content-Type: multipart/report; report-type=delivery-status; boundary=z\r\n\r\n"
            b"--z\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n"
            + blocks.encode() + b"--z--\r\n")


BOMBS = {
    "nested-multipart": lambda: nested_multipart(20_000),
    "many-parts": lambda: b"Content-Type: multipart/mixed; boundary=q\r\n\r\n"
    + b"--q\r\nContent-Type: text/plain\r\n\r\nuser@example.org: 550 5.1.1 no\r\n" * 20_000,
    "many-dsn-blocks": lambda: many_dsn_blocks(20_000),
    "long-line": lambda: b"From: MAILER-DAEMON@x\r\nSubject: failure notice\r\n\r\n"
    + b"a" * 3_000_000,
    "address-soup": lambda: b"From: MAILER-DAEMON@x\r\nSubject: failure notice\r\n\r\n"
    + b"<a@b.c>: 550 " * 200_000,
    "long-local-parts": lambda: b"From: MAILER-DAEMON@x\r\nSubject: failure notice\r\n\r\n"
    + (b"a" * 63 + b".") * 30_000 + b"@",
    "huge-header": lambda: b"Subject: " + b"=?utf-8?q?x?= " * 100_000 + b"\r\n\r\nbody",
    "json-bomb": lambda: b"Subject: AWS\r\n\r\n{\"notificationType\":" + b"[" * 500_000,
    **{f"html-{k}": v for k, v in HOSTILE.items()},
}


@pytest.mark.parametrize("shape", sorted(BOMBS))
def test_hostile_shapes_are_bounded(shape):
    timed(BOMBS[shape]())


def test_recipients_are_capped():
    report = timed(many_dsn_blocks(500))
    assert report.type == "bounce" and len(report.recipients) == MAX_RECIPIENTS
