"""Header fields the dashboard shows, read cheaply from a stored message: only the first header
block is looked at, with no MIME parse (the queue writer calls this on the accept path)."""
from __future__ import annotations

import re
from email.errors import HeaderParseError
from email.header import decode_header, make_header

from features.mime import header_end

MAX_HEAD = 64 * 1024  # a header block longer than this is cut (a subject past it is not found)
MAX_SUBJECT = 998  # RFC 5322's line limit; the column's length
_SUBJECT = re.compile(rb"^subject[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)", re.IGNORECASE | re.MULTILINE)
_FOLD = re.compile(r"\r?\n(?=[ \t])")
# Control characters (NUL breaks PostgreSQL's text and jsonb; the rest breaks a table row).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]+")


def subject_of(raw: bytes | bytearray | memoryview) -> str:
    """The Subject of a message as text: unfolded, RFC 2047 encoded words decoded, raw UTF-8
    (RFC 6532) read as such, control characters removed; "" when there is none."""
    head = bytes(raw[:MAX_HEAD])
    head = head[: header_end(head)[0]]
    m = _SUBJECT.search(head)
    if m is None:
        return ""
    text = _FOLD.sub("", m.group(1).decode("utf-8", "replace")).strip()
    if "=?" in text:
        try:
            text = str(make_header(decode_header(text))) or text
        except (HeaderParseError, LookupError, UnicodeError, ValueError):
            pass  # shown as it was written
    return _CONTROL.sub(" ", text).strip()[:MAX_SUBJECT]
