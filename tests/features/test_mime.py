"""features.mime.header_end, the one definition of where a header block ends, against a plain
regular-expression reference."""
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from features.mime import header_end

_BLANK = re.compile(rb"\r?\n\r?\n")


def reference(raw: bytes, start: int, end: int) -> tuple[int, int]:
    for nl in (b"\r\n", b"\n"):
        if raw.startswith(nl, start, end):
            return start, start + len(nl)
    m = _BLANK.search(raw, start, end)
    if m is None:
        return end, end
    return m.start() + (2 if raw[m.start()] == 0x0D else 1), m.end()


@pytest.mark.parametrize("raw, expected", [
    (b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\n", (12, 14)),
    (b"A: 1\nB: 2\n\nbody", (10, 11)),
    (b"A: 1\r\n\nbody", (6, 7)),
    (b"A: 1\n\r\nbody", (5, 7)),
    (b"\r\nbody\r\n\r\n", (0, 2)),  # no fields: the body starts at once
    (b"\nA: 1\n\n", (0, 1)),
    (b"A: 1\r\nB: 2", (10, 10)),  # no empty line: all header
    (b"", (0, 0)),
])
def test_header_end(raw, expected):
    assert header_end(raw) == expected
    assert header_end(bytearray(raw)) == expected


@given(st.binary(max_size=40).map(lambda b: b.translate(bytes.maketrans(b"abcd", b"\r\n\r\n"))),
       st.data())
def test_header_end_matches_the_reference(raw, data):
    start = data.draw(st.integers(0, len(raw)))
    end = data.draw(st.integers(start, len(raw)))
    assert header_end(raw, start, end) == reference(raw, start, end)
