"""X-SMTPeter-* headers override a login's features for one message and never leave the relay."""
import pytest

from features.overrides import apply_overrides, read_overrides, strip_smtpeter_headers

RAW = (
    b"From: a@example.com\r\n"
    b"X-SMTPeter-TrackClicks: FALSE\r\n"
    b"X-SMTPeter-Tags: news,\r\n  weekly\r\n"
    b"Subject: hi\r\n"
    b"x-smtpeter-inlinecss: True\r\n"
    b"X-SMTPeter-TrackOpens: maybe\r\n"
    b"\r\n"
    b"body\r\nX-SMTPeter-TrackOpens: true\r\n"
)


def test_overrides_and_tags_are_read_from_the_header_block_only():
    features, tags = read_overrides(RAW)
    assert features == {"clicktracking": False, "inlinecss": True}
    assert tags == ["news", "weekly"]


def test_apply_overrides_keeps_the_rest_of_the_feature_set():
    login = {"clicktracking": True, "openstracking": True, "inlinecss": False}
    features, _ = apply_overrides(login, RAW)
    assert features == {"clicktracking": False, "openstracking": True, "inlinecss": True}


def test_strip_removes_every_smtpeter_header_and_leaves_the_body():
    assert strip_smtpeter_headers(RAW) == (
        b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\nX-SMTPeter-TrackOpens: true\r\n"
    )


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b"X-SMTPeter-Tags: a\r\n\r\nbody", b"\r\nbody"),
        (b"From: a\r\nX-SMTPeter-Tags: a", b"From: a\r\n"),
        (b"From: a\nX-SMTPeter-Tags: a\n\nbody\n", b"From: a\n\nbody\n"),
        (b"From: a\r\n\r\nno headers to strip", b"From: a\r\n\r\nno headers to strip"),
        # A stray CR inside a header block is data, not a line end: it stays.
        (b"A: 1\rB: 2\r\nX-SMTPeter-Tags: a\r\nC: \x00\r\n\r\nb",
         b"A: 1\rB: 2\r\nC: \x00\r\n\r\nb"),
        (b"A: 1\r\n\tfolded\r\nX-SMTPeter-Tags: a\r\n\tfolded too\r\n\r\nb",
         b"A: 1\r\n\tfolded\r\n\r\nb"),
    ],
)
def test_strip_edge_cases(raw, expected):
    assert strip_smtpeter_headers(raw) == expected


def test_ignore_suppression_is_a_message_flag_only_when_true():
    from features.overrides import IGNORE_SUPPRESSION

    def flag(*values):
        raw = b"".join(b"X-SMTPeter-IgnoreSuppression: " + v + b"\r\n" for v in values)
        features, _ = read_overrides(raw + b"Subject: x\r\n\r\nbody\r\n")
        return features

    assert flag(b"true") == {IGNORE_SUPPRESSION: True}
    assert flag(b" True ") == {IGNORE_SUPPRESSION: True}
    assert flag(b"false") == flag(b"1") == flag(b"yes") == {}
    assert flag(b"true", b"false") == {}  # the last one wins
    raw = b"X-SMTPeter-IgnoreSuppression: true\r\nSubject: x\r\n\r\nbody\r\n"
    assert strip_smtpeter_headers(raw) == b"Subject: x\r\n\r\nbody\r\n"
