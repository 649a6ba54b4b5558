"""Per-message X-SMTPeter-* headers: read the overrides of a login's feature set, strip the headers.

Cheap enough for the SMTP accept path: only the header block is looked at, with no MIME parse.
"""
from __future__ import annotations

import re
import unicodedata

from .mime import header_end

HEADER_FEATURES = {
    b"x-smtpeter-trackclicks": "clicktracking",
    b"x-smtpeter-trackopens": "openstracking",
    b"x-smtpeter-trackbounces": "bouncetracking",
    b"x-smtpeter-preventscam": "preventscam",
    b"x-smtpeter-inlinecss": "inlinecss",
}
# Not a feature of the login: a per-message flag, kept in Message.features under this key
# only when the header says true (relay.delivery.check_suppression reads it).
IGNORE_SUPPRESSION = "ignore_suppression"
_IGNORE_SUPPRESSION_HEADER = b"x-smtpeter-ignoresuppression"
# Tags are client text stored in a JSON column and shown on pages: PostgreSQL's jsonb refuses
# NUL, and control or format characters (escapes, bidi overrides) have no place in a label.
MAX_TAGS = 10
MAX_TAG_LENGTH = 100  # characters
_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.MULTILINE)


def header_block(raw: bytes) -> bytes:
    """The header section of a message (up to the first empty line)."""
    return raw[: header_end(raw)[0]]


def clean_tags(tags: list[str]) -> list[str]:
    """At most MAX_TAGS distinct tags, in order, each without control or format characters
    (Unicode Cc, Cf), trimmed, cut to MAX_TAG_LENGTH characters; empty ones dropped."""
    cleaned: list[str] = []
    for tag in tags:
        if len(tag) > 4 * MAX_TAG_LENGTH:  # what a long tag may lose below, and no more work
            tag = tag[: 4 * MAX_TAG_LENGTH]
        tag = "".join(ch for ch in tag if unicodedata.category(ch) not in ("Cc", "Cf"))
        tag = tag.strip()[:MAX_TAG_LENGTH].strip()
        if tag and tag not in cleaned:
            cleaned.append(tag)
            if len(cleaned) == MAX_TAGS:
                break
    return cleaned


def read_overrides(raw: bytes) -> tuple[dict[str, bool], list[str]]:
    """Feature overrides ({feature: bool}) and tags named by X-SMTPeter-* headers.

    X-SMTPeter-IgnoreSuppression: true adds {IGNORE_SUPPRESSION: True} (absent otherwise).
    Values other than true/false (any case) are ignored; the last header of a kind wins.
    Tags come from every X-SMTPeter-Tags header, comma-separated, through clean_tags.
    """
    features: dict[str, bool] = {}
    tags: list[str] = []
    for m in _FIELD.finditer(header_block(raw)):
        name = m.group(1).lower()
        value = re.sub(rb"\r?\n[ \t]", b" ", m.group(2)).strip().decode("utf-8", "replace")
        if name in HEADER_FEATURES and value.lower() in ("true", "false"):
            features[HEADER_FEATURES[name]] = value.lower() == "true"
        elif name == _IGNORE_SUPPRESSION_HEADER and value.lower() in ("true", "false"):
            if value.lower() == "true":
                features[IGNORE_SUPPRESSION] = True
            else:
                features.pop(IGNORE_SUPPRESSION, None)
        elif name == b"x-smtpeter-tags":
            tags.extend(value.split(","))
    return features, clean_tags(tags)


def apply_overrides(featureset: dict[str, bool], raw: bytes) -> tuple[dict[str, bool], list[str]]:
    """The login's feature set with the message's overrides applied, and the message's tags."""
    overrides, tags = read_overrides(raw)
    return {**featureset, **overrides}, tags


def strip_smtpeter_headers(raw: bytes) -> bytes:
    """The message without any X-SMTPeter-* header field (folded lines included); body untouched."""
    cut = header_end(raw)[0]
    head, rest = raw[:cut], raw[cut:]
    # Lines end at LF; a stray CR is part of its line and is kept.
    fields = re.finditer(rb"[^\n]*(?:\n|$)(?:[ \t][^\n]*(?:\n|$))*", head)
    kept = [
        m.group(0)
        for m in fields
        if m.group(0) and not m.group(0).lower().startswith(b"x-smtpeter-")
    ]
    return b"".join(kept) + rest


_MAX_DELIVER_TIME = re.compile(rb"^x-smtpeter-maxdelivertime[ \t]*:[ \t]*(\d{1,9})[ \t]*\r?$",
                               re.IGNORECASE | re.MULTILINE)


def max_deliver_seconds(raw: bytes) -> int | None:
    """Seconds from X-SMTPeter-MaxDeliverTime (a whole number above 0; the last one wins),
    else None. Stripped before delivery with the other X-SMTPeter-* headers."""
    found = _MAX_DELIVER_TIME.findall(header_block(raw))
    return int(found[-1]) or None if found else None
