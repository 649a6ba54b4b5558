"""Submission over HTTP (the REST API's POST /api/v1/messages/): the same Submission and the
same queue_writer.write_batch() as SMTP DATA, called synchronously, so that "202" promises
what "250" does: the message and its recipients are committed.

The same limits as SMTP (SMTP_MAX_MESSAGE_SIZE, SMTP_MAX_RECIPIENTS, 998-octet lines, RFC 5321
addresses); X-SMTPeter-* headers in the message override the login's features, as on SMTP,
because write_batch() reads them. A message is either given whole (raw RFC 5322 text plus an
envelope) or built here from fields with the standard library's email package.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import email.utils
import logging
import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection

from .esmtp_params import ParamError, parse_path
from .models import Message, new_queue_id
from .queue_writer import Submission, write_batch

if TYPE_CHECKING:
    from credentials.models import Login

log = logging.getLogger("relay.queue")
MAX_LINE = 998
_NEWLINE = re.compile(rb"\r\n|\r|\n")
# Header fields the API builds itself from other fields.
_BUILT = {"from", "to", "cc", "bcc", "subject", "date", "message-id", "mime-version",
          "content-type", "content-transfer-encoding"}
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")


class Refused(Exception):
    """The message is not taken: ``field`` says which input, ``status`` 400 or 413."""

    def __init__(self, field: str, reason: str, status: int = 400):
        super().__init__(reason)
        self.field = field
        self.reason = reason
        self.status = status


@dataclass
class Attachment:
    filename: str
    content_type: str
    content_base64: str


@dataclass
class Fields:
    """A message to build: From, To, Cc, Bcc (envelope only), Subject, bodies, and more."""

    sender: str
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    subject: str = ""
    text: str = ""
    html: str = ""
    tags: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)


def check_address(address: str, field_name: str, allow_null: bool = False) -> str:
    """The address if RFC 5321 takes it as a mailbox (as MAIL FROM / RCPT TO do), else Refused."""
    if "<" in address or ">" in address:
        raise Refused(field_name, f"malformed address {address[:100]!r}")
    try:
        found, rest = parse_path(f"<{address}>", allow_null=allow_null)
    except ParamError:
        raise Refused(field_name, f"malformed address {address[:100]!r}") from None
    if rest:
        raise Refused(field_name, f"malformed address {address[:100]!r}")
    return found


def addresses(header_values: list[str]) -> list[str]:
    """The addresses in To/Cc/Bcc values such as "Ann <ann@example.com>, bob@example.com"."""
    return [addr for _, addr in email.utils.getaddresses(header_values) if addr]


def first_address(header_value: str) -> str:
    found = addresses([header_value])
    if not found:
        raise Refused("from", "no address in from")
    return check_address(found[0], "from")


def build(fields: Fields) -> bytes:
    """The RFC 5322 message for ``fields`` (CRLF line ends, long lines encoded)."""
    msg = EmailMessage(policy=SMTP)
    try:
        msg["From"] = fields.sender
        if fields.to:
            msg["To"] = ", ".join(fields.to)
        if fields.cc:
            msg["Cc"] = ", ".join(fields.cc)
        msg["Subject"] = fields.subject
        msg["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = email.utils.make_msgid(domain=settings.SMTP_HOSTNAME)
        if fields.tags:
            msg["X-SMTPeter-Tags"] = ", ".join(fields.tags)
        for name, value in fields.headers.items():
            if not _HEADER_NAME.match(name) or name.lower() in _BUILT:
                raise Refused("headers", f"header {name[:100]!r} cannot be set here")
            if "\r" in value or "\n" in value:
                raise Refused("headers", f"header {name[:100]!r} holds a line break")
            msg[name] = value
        if fields.text or not fields.html:
            msg.set_content(fields.text)
            if fields.html:
                msg.add_alternative(fields.html, subtype="html")
        else:
            msg.set_content(fields.html, subtype="html")
        for i, a in enumerate(fields.attachments):
            maintype, _, subtype = a.content_type.partition("/")
            if not maintype or not subtype or "/" in subtype:
                raise Refused(f"attachments[{i}]", "content_type must be type/subtype")
            try:
                data = base64.b64decode(a.content_base64, validate=True)
            except (binascii.Error, ValueError):
                raise Refused(f"attachments[{i}]", "content is not valid base64") from None
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=a.filename)
        return msg.as_bytes()
    except Refused:
        raise
    except (ValueError, TypeError, IndexError) as exc:
        # The email package refuses a header value it cannot encode (e.g. a bad address).
        raise Refused("message", f"cannot build the message: {exc}") from None


def normalize(raw: bytes) -> bytes:
    """Line ends made CRLF (JSON text usually has LF); a line over 998 octets is Refused, as
    SMTP DATA refuses it."""
    lines = _NEWLINE.split(raw)
    for n, line in enumerate(lines, 1):
        if len(line) > MAX_LINE:
            raise Refused("raw", f"line {n} has {len(line)} octets; at most {MAX_LINE}")
    out = b"\r\n".join(lines)
    return out if out.endswith(b"\r\n") else out + b"\r\n"


def _received(queue_id: str, client_ip: str | None, secure: bool, rcpt: list[str]) -> bytes:
    proto = "HTTPS" if secure else "HTTP"
    lines = [f"Received: from [{client_ip or 'unknown'}]",
             f"\tby {settings.SMTP_HOSTNAME} (smtpeter) with {proto} (REST API) id {queue_id}"]
    if len(rcpt) == 1:
        lines.append(f"\tfor <{rcpt[0]}>;")
    else:
        lines[-1] += ";"
    lines.append("\t" + email.utils.format_datetime(email.utils.localtime()))
    return ("\r\n".join(lines) + "\r\n").encode("ascii", "replace")


@contextlib.contextmanager
def _durable():
    """On SQLite, the commit survives power loss as the queue writer's does (synchronous=FULL;
    the web connection's default is NORMAL, which only survives a crash of the process)."""
    # Inside an outer transaction (a test's) SQLite refuses the PRAGMA; the commit that
    # counts is that transaction's then, not ours.
    sqlite = connection.vendor == "sqlite" and not connection.in_atomic_block
    if sqlite:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous=FULL")
    try:
        yield
    finally:
        if sqlite:
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA synchronous=NORMAL")


def submit(login: Login, mail_from: str, recipients: list[str], message: bytes, *,
           client_ip: str | None, secure: bool) -> str:
    """Queue ``message`` for ``recipients`` from ``login`` (enabled, checked by the caller);
    returns the queue id once committed. Refused on a limit; a database error propagates."""
    mail_from = check_address(mail_from, "mail_from", allow_null=True)
    if not recipients:
        raise Refused("rcpt_to", "at least one recipient is needed")
    if len(recipients) > settings.SMTP_MAX_RECIPIENTS:
        raise Refused("rcpt_to", f"{len(recipients)} recipients; at most "
                                 f"{settings.SMTP_MAX_RECIPIENTS} per message")
    recipients = [check_address(r, "rcpt_to") for r in recipients]
    message = normalize(message)
    queue_id = new_queue_id()
    raw = _received(queue_id, client_ip, secure, recipients) + message
    limit = settings.SMTP_MAX_MESSAGE_SIZE
    if len(raw) > limit:
        raise Refused("message", f"{len(raw)} octets; at most {limit}", status=413)
    sub = Submission(
        queue_id=queue_id, kind=Message.Kind.SUBMISSION, login_id=login.pk,
        owner_id=login.owner_id, mail_from=mail_from, ret="", envid="",
        body="" if raw.isascii() else "8BITMIME",
        client_ip=client_ip, helo="", tls_version="", raw=raw,
        recipients=[(r, "", "") for r in recipients],
    )
    with _durable():
        write_batch([sub], {login.pk})
    log.info("queued %s over HTTP: from=<%s> nrcpt=%d size=%d login=%s ip=%s",
             queue_id, mail_from, len(recipients), len(raw), login.username, client_ip or "-")
    return queue_id
