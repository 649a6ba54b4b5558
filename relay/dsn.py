"""RFC 3464 delivery status notifications: when one is due (RFC 3461 NOTIFY) and its bytes.

``build_dsn()`` is a pure function of plain values; it returns the whole message (headers and
body, CRLF line ends) to be queued from the null sender to the original envelope sender.
The decisions:

- The original goes back as ``message/rfc822`` only for RET=FULL and only up to
  ``max_full_size`` bytes (default 100 KB, twice Postfix's bounce_size_limit: a newsletter
  fits, an attachment does not); otherwise, and by default, its header as
  ``text/rfc822-headers``, itself cut at ``max_header_size`` on a line boundary. The text part
  says which was attached and why.
- Everything we write ourselves is ASCII: a server's words, ORCPT and ENVID have every byte
  outside printable ASCII replaced by "?", so nothing a remote server says can add a header
  line. Long fields are folded. The original keeps its bytes (its line ends become CRLF);
  an 8-bit original part says ``Content-Transfer-Encoding: 8bit``.
- Original-Recipient carries ORCPT as received, decoded ("rfc822;user+tag@example.com").
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid

from features.mime import header_end

ACTIONS = ("failed", "delayed", "delivered", "relayed")
MAX_FULL_SIZE = 100_000
MAX_HEADER_SIZE = 64 * 1024
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}\Z")

_SUBJECTS = {
    "failed": "Undelivered Mail Returned to Sender",
    "delayed": "Delayed Mail (still being retried)",
    "delivered": "Successful Mail Delivery Report",
    "relayed": "Mail Relayed (no further reports)",
}
_INTROS = {
    "failed": "Your message could not be delivered to the recipients below. This is final: "
              "it will not be tried again.",
    "delayed": "Your message has not been delivered yet to the recipients below. Nothing "
               "needs to be done: it is being retried, and you will be told if it fails in "
               "the end.",
    "delivered": "Your message was delivered to the recipients below.",
    "relayed": "Your message was handed to the next mail server for the recipients below. "
               "That server does not send delivery reports, so you will hear no more about "
               "these recipients from us, even if delivery fails later.",
}


@dataclass(frozen=True)
class DsnRecipient:
    """One recipient's line in a report.

    ``status`` is an RFC 3463 code ("5.1.1"); ``diagnostic`` the remote server's reply as
    text ("550 5.1.1 No such user"), written as ``Diagnostic-Code: smtp; ...``; ``remote_mta``
    the host that said it; ``original_recipient`` ORCPT as "addr-type;address".
    """

    final_recipient: str
    action: str
    status: str
    original_recipient: str = ""
    remote_mta: str = ""
    diagnostic: str = ""
    last_attempt: datetime | None = None
    will_retry_until: datetime | None = None  # for "delayed"


def dsn_wanted(notify: str, outcome: str) -> bool:
    """Whether RCPT's NOTIFY asks for a report of ``outcome`` (one of ACTIONS).

    No NOTIFY means failures only; NEVER means none (RFC 3461 4.1).
    """
    if outcome not in ACTIONS:
        raise ValueError(f"unknown outcome {outcome!r}")
    words = {w.strip().upper() for w in notify.split(",") if w.strip()}
    if "NEVER" in words:
        return False
    if outcome == "failed":
        return not words or "FAILURE" in words
    if outcome == "delayed":
        return "DELAY" in words
    return "SUCCESS" in words


def ascii_text(text: str, limit: int = 2000) -> str:
    """One line of printable ASCII: anything else becomes "?" (no header injection)."""
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text[:limit]).strip()


def _fold(name: str, value: str) -> bytes:
    """``Name: value`` folded at spaces before 78 columns where it can be (RFC 5322 2.2.3)."""
    words = value.split(" ")
    lines, line = [], f"{name}: {words[0]}"
    for word in words[1:]:
        if len(line) + 1 + len(word) > 78:
            lines.append(line)
            line = " " + word
        else:
            line += " " + word
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _date(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return format_datetime(value)


def _header_block(original: bytes, limit: int) -> bytes:
    header = original[: header_end(original)[0]]
    header = _LINE_ENDS.sub(b"\r\n", header)
    if len(header) > limit:
        cut = header.rfind(b"\r\n", 0, limit)
        header = header[: max(cut, 0)]
    return header.rstrip(b"\r\n") + b"\r\n" if header else b""


def _human(recipients: Sequence[DsnRecipient], reporting_mta: str, note: str) -> str:
    lines = [f"This is the mail system at {reporting_mta}.", ""]
    for action in ACTIONS:
        group = [r for r in recipients if r.action == action]
        if not group:
            continue
        lines += [_INTROS[action], ""]
        for r in group:
            lines.append(f"<{ascii_text(r.final_recipient, 500)}>:")
            if r.diagnostic:
                where = ascii_text(r.remote_mta, 255) or "the mail system"
                lines.append(f"    {where} said: {ascii_text(r.diagnostic)}")
            else:
                lines.append(f"    status {ascii_text(r.status, 20)}")
            if r.will_retry_until is not None and action == "delayed":
                lines.append(f"    retried until {_date(r.will_retry_until)}")
        lines.append("")
    if note:
        lines += [note, ""]
    return "\r\n".join(_wrap(line) for line in lines)


def _wrap(line: str, width: int = 76) -> str:
    """Long lines of the text part broken at spaces, continuation indented."""
    out, rest = [], line
    while len(rest) > width and " " in rest[:width].strip():
        cut = rest.rfind(" ", 1, width)
        out.append(rest[:cut])
        rest = "        " + rest[cut + 1 :]
    out.append(rest)
    return "\r\n".join(out)


def _status_fields(r: DsnRecipient) -> bytes:
    if r.action not in ACTIONS:
        raise ValueError(f"unknown action {r.action!r}")
    status = r.status if _STATUS.match(r.status) else {"failed": "5.0.0", "delayed": "4.0.0"}.get(
        r.action, "2.0.0")
    out = b""
    if r.original_recipient:
        addr_type, _, address = r.original_recipient.partition(";")
        out += _fold("Original-Recipient", f"{ascii_text(addr_type, 40) or 'rfc822'};"
                                           f"{ascii_text(address, 500)}")
    out += _fold("Final-Recipient", f"rfc822; {ascii_text(r.final_recipient, 500)}")
    out += _fold("Action", r.action)
    out += _fold("Status", status)
    if r.remote_mta:
        out += _fold("Remote-MTA", f"dns; {ascii_text(r.remote_mta, 255)}")
    if r.diagnostic:
        out += _fold("Diagnostic-Code", f"smtp; {ascii_text(r.diagnostic)}")
    if r.last_attempt is not None:
        out += _fold("Last-Attempt-Date", _date(r.last_attempt))
    if r.will_retry_until is not None and r.action == "delayed":
        out += _fold("Will-Retry-Until", _date(r.will_retry_until))
    return out


def build_dsn(*, reporting_mta: str, original_sender: str,
              recipients: Sequence[DsnRecipient], original: bytes, arrival_date: datetime,
              ret: str = "", envid: str = "", now: datetime | None = None,
              max_full_size: int = MAX_FULL_SIZE,
              max_header_size: int = MAX_HEADER_SIZE) -> bytes:
    """The report, as bytes with CRLF line ends, From MAILER-DAEMON@reporting_mta.

    Raises ValueError for no recipients, an unknown action, or an empty original sender
    (a message from the null sender never gets a report: no loops).
    """
    if not recipients:
        raise ValueError("a report needs at least one recipient")
    if not original_sender:
        raise ValueError("no report to the null sender")
    mta = ascii_text(reporting_mta, 255)
    now = now or datetime.now(UTC)
    original = _LINE_ENDS.sub(b"\r\n", original)
    full = ret.upper() == "FULL" and len(original) <= max_full_size
    note = ""
    if ret.upper() == "FULL" and not full:
        note = (f"Your message was {len(original)} bytes, too large to return whole; "
                "its header is attached.")
    elif not full:
        note = "The header of your message is attached."
    else:
        note = "Your message is attached."
    if full:
        part = original if original.endswith(b"\r\n") else original + b"\r\n"
        ctype = b"message/rfc822"
    else:
        part = _header_block(original, max_header_size)
        ctype = b"text/rfc822-headers"
    boundary = f"dsn-{uuid.uuid4().hex}"
    while boundary.encode() in original:  # pragma: no cover - 128 random bits
        boundary = f"dsn-{uuid.uuid4().hex}"
    per_message = _fold("Reporting-MTA", f"dns; {mta}")
    if envid:
        per_message += _fold("Original-Envelope-Id", ascii_text(envid, 200))
    per_message += _fold("Arrival-Date", _date(arrival_date))
    status_part = per_message + b"".join(b"\r\n" + _status_fields(r) for r in recipients)
    worst = next(a for a in ACTIONS if any(r.action == a for r in recipients))

    header = (
        _fold("From", f"Mail Delivery System <MAILER-DAEMON@{mta}>")
        + _fold("To", f"<{ascii_text(original_sender, 500)}>")
        + _fold("Subject", _SUBJECTS[worst])
        + _fold("Date", _date(now))
        + _fold("Message-ID", make_msgid("dsn", domain=mta))
        + _fold("Auto-Submitted", "auto-replied")
        + b"MIME-Version: 1.0\r\n"
        + _fold("Content-Type", f'multipart/report; report-type=delivery-status; '
                                f'boundary="{boundary}"')
    )
    b = boundary.encode()
    cte = b"8bit" if re.search(rb"[\x80-\xff]", part) else b"7bit"
    return b"".join([
        header, b"\r\n",
        b"This is a MIME-encapsulated message.\r\n\r\n",
        b"--", b, b"\r\n",
        b"Content-Type: text/plain; charset=us-ascii\r\n",
        b"Content-Description: Notification\r\n\r\n",
        _human(recipients, mta, note).encode("ascii"), b"\r\n\r\n",
        b"--", b, b"\r\n",
        b"Content-Type: message/delivery-status\r\n",
        b"Content-Description: Delivery report\r\n\r\n",
        status_part, b"\r\n",
        b"--", b, b"\r\n",
        b"Content-Type: ", ctype, b"\r\n",
        b"Content-Description: ", b"Your message" if full else b"Your message's header",
        b"\r\n",
        b"Content-Transfer-Encoding: ", cte, b"\r\n\r\n",
        part, b"\r\n",
        b"--", b, b"--\r\n",
    ])
