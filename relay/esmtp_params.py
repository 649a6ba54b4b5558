"""Parsing and validation of MAIL FROM / RCPT TO parameters (RFC 1870 SIZE, RFC 6152 BODY,
RFC 3461 RET, ENVID, NOTIFY, ORCPT), keeping the case of the xtext values.

Plain functions: each returns the parsed values or raises ParamError carrying the SMTP reply.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

ENVID_MAX = 100  # RFC 3461 4.4: encoded length
ORCPT_MAX = 500  # RFC 3461 4.2
NOTIFY_WORDS = ("SUCCESS", "FAILURE", "DELAY")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_ADDR_TYPE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]+\Z")  # an atom
_HEXCHAR = re.compile(r"\+([0-9A-Fa-f]{2})")


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LOCAL = rf'(?:{_ATEXT}+(?:\.{_ATEXT}+)*|"(?:[ !#-\[\]-~]|\\[ -~])*")'
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[!-Z^-~]+\])"
MAILBOX = re.compile(rf"{_LOCAL}@{_DOMAIN}\Z")


class ParamError(ValueError):
    """A parameter the server refuses; str() is the full SMTP reply."""


@dataclass
class MailParams:
    size: int | None = None
    body: str = ""
    ret: str = ""
    envid: str = ""


@dataclass
class RcptParams:
    notify: str = ""
    orcpt: str = ""


def is_printable_ascii(text: str) -> bool:
    return all(" " <= ch <= "~" for ch in text)


def printable(text: str, limit: int = 200) -> str:
    """Client-provided text made safe for one log line: at most ``limit`` characters, escapes
    for anything but printable ASCII (no raw NUL, CR or LF can reach the log)."""
    return text[:limit].encode("unicode_escape").decode("ascii")[:limit]


def xtext_decode(value: str) -> str:
    """Decode RFC 3461 xtext; raise ValueError if ``value`` is not xtext."""
    out = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "+":
            m = _HEXCHAR.match(value, i)
            if not m:
                raise ValueError("bad +XX escape in xtext")
            out.append(chr(int(m.group(1), 16)))
            i += 3
            continue
        if not ("!" <= ch <= "~") or ch == "=":
            raise ValueError("character not allowed in xtext")
        out.append(ch)
        i += 1
    return "".join(out)


def xtext_encode(value: str) -> str:
    """Encode ``value`` as RFC 3461 xtext (used by tests and, later, by delivery)."""
    return "".join(
        ch if "!" <= ch <= "~" and ch not in "+=" else f"+{ord(ch):02X}" for ch in value
    )


def parse_path(
    text: str, allow_null: bool, allow_postmaster: bool = False
) -> tuple[str, str]:
    """``<mailbox> params`` (or a bare ``mailbox params``) to (mailbox, params text).

    RFC 5321 Mailbox syntax: a dot-string or quoted local part, a domain or an address literal.
    The null reverse-path ``<>`` gives "" when ``allow_null``; ``<Postmaster>`` without a
    domain (any case, RFC 5321 4.1.1.3) is returned as sent when ``allow_postmaster``.
    """
    text = text.strip()
    if text.startswith("<"):
        end = text.find(">")
        if end < 0:
            raise ParamError("501 5.5.4 Syntax: missing '>'")
        address, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(" "):
            raise ParamError("501 5.5.4 Syntax: a space must follow '>'")
    else:
        address, _, rest = text.partition(" ")
    if address == "" and allow_null:
        return "", rest
    if allow_postmaster and address.lower() == "postmaster":
        return address, rest
    if len(address) > 254 or not MAILBOX.match(address):
        raise ParamError("553 5.1.3 Malformed address")
    return address, rest


def split_params(text: str) -> dict[str, str | None]:
    """``KEY=value`` words to {KEY upper-cased: value as sent}; refuses duplicates, bad keys."""
    params: dict[str, str | None] = {}
    for word in text.split():
        key, eq, value = word.partition("=")
        if not _KEYWORD.match(key) or (eq and not value):
            raise ParamError(f"501 5.5.4 Syntax error in parameter {word[:40]!r}")
        key = key.upper()
        if key in params:
            raise ParamError(f"501 5.5.4 Duplicate parameter {key}")
        params[key] = value if eq else None
    return params


def parse_mail_params(text: str, max_size: int) -> MailParams:
    """Validate the parameters after ``MAIL FROM:<addr>``."""
    params = split_params(text)
    result = MailParams()
    if "SIZE" in params:
        size = params.pop("SIZE")
        if size is None or not size.isdigit() or len(size) > 20:
            raise ParamError("501 5.5.4 SIZE takes a number of octets")
        result.size = int(size)
        if max_size and result.size > max_size:
            raise ParamError(
                f"552 5.3.4 Message size exceeds fixed maximum message size ({max_size})"
            )
    if "BODY" in params:
        body = (params.pop("BODY") or "").upper()
        if body not in ("7BIT", "8BITMIME"):
            raise ParamError("501 5.5.4 BODY must be 7BIT or 8BITMIME")
        result.body = body
    if "RET" in params:
        ret = (params.pop("RET") or "").upper()
        if ret not in ("FULL", "HDRS"):
            raise ParamError("501 5.5.4 RET must be FULL or HDRS")
        result.ret = ret
    if "ENVID" in params:
        envid = params.pop("ENVID")
        if envid is None or len(envid) > ENVID_MAX:
            raise ParamError(f"501 5.5.4 ENVID must be 1 to {ENVID_MAX} characters of xtext")
        try:
            result.envid = xtext_decode(envid)
        except ValueError as exc:
            raise ParamError(f"501 5.5.4 ENVID is not valid xtext: {exc}") from None
        if not is_printable_ascii(result.envid):
            raise ParamError("501 5.5.4 ENVID must decode to printable ASCII")
    if params:
        raise ParamError(
            f"555 5.5.4 MAIL FROM parameter not recognized: {', '.join(sorted(params))}"
        )
    return result


def parse_rcpt_params(text: str) -> RcptParams:
    """Validate the parameters after ``RCPT TO:<addr>``."""
    params = split_params(text)
    result = RcptParams()
    if "NOTIFY" in params:
        words = (params.pop("NOTIFY") or "").upper().split(",")
        if words == ["NEVER"]:
            result.notify = "NEVER"
        elif (
            not words
            or any(w not in NOTIFY_WORDS for w in words)
            or len(set(words)) != len(words)
        ):
            raise ParamError(
                "501 5.5.4 NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY"
            )
        else:
            result.notify = ",".join(words)
    if "ORCPT" in params:
        orcpt = params.pop("ORCPT") or ""
        addr_type, semi, xtext = orcpt.partition(";")
        if not semi or not xtext or not _ADDR_TYPE.match(addr_type) or len(orcpt) > ORCPT_MAX:
            raise ParamError("501 5.5.4 ORCPT must be addr-type;xtext")
        try:
            address = xtext_decode(xtext)
        except ValueError as exc:
            raise ParamError(f"501 5.5.4 ORCPT is not valid xtext: {exc}") from None
        # It goes into DSN headers later: no CR/LF (header injection), NUL or 8-bit octets.
        if not is_printable_ascii(address):
            raise ParamError("501 5.5.4 ORCPT must decode to printable ASCII")
        result.orcpt = f"{addr_type};{address}"
    if params:
        raise ParamError(
            f"555 5.5.4 RCPT TO parameter not recognized: {', '.join(sorted(params))}"
        )
    return result
