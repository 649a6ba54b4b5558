"""What comes back, read: bounces (RFC 3464 and the text shapes real servers send), complaints
(RFC 5965 ARF, Amazon SES), auto-replies (RFC 3834) and delivery notices, as a `Report`.

Pure functions, bytes in, a Report out: no models, no I/O. `parse_report` never raises and only
reads the first MAX_BYTES, MAX_PARTS parts and MAX_DEPTH levels of what it is given.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from email import message_from_bytes, message_from_string, policy
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parseaddr
from typing import Literal

from relay.classify import ENHANCED, classify, status_of

ReportType = Literal["bounce", "complaint", "auto-reply", "delivery", "unknown"]

MAX_BYTES = 1024 * 1024
MAX_PARTS = 64
MAX_DEPTH = 8
MAX_RECIPIENTS = 100
MAX_TEXT = 64 * 1024  # of one decoded text part
MAX_LINE = 2000
MAX_DIAGNOSTIC = 1000


@dataclass
class ReportRecipient:
    address: str
    status: str = ""  # enhanced status, "5.1.1"
    action: str = ""  # failed, delayed, delivered, relayed, expanded ("" when unknown)
    class_: Literal["hard", "soft", ""] = ""  # "" for delivered recipients and complaints
    reason: str = ""  # one of relay.classify.REASONS, or "" as class_
    diagnostic: str = ""  # the remote server's words
    remote_mta: str = ""
    original_recipient: str = ""
    last_attempt: str = ""


@dataclass
class OriginalMessage:
    """Headers of the returned or reported message."""
    message_id: str = ""
    return_path: str = ""  # our VERP address when bouncetracking sent it
    subject: str = ""
    from_: str = ""
    to: str = ""


@dataclass
class ArfFields:
    feedback_type: str = ""
    user_agent: str = ""
    source_ip: str = ""
    original_rcpt_to: str = ""
    original_mail_from: str = ""
    reported_domain: str = ""
    arrival_date: str = ""


@dataclass
class Report:
    type: ReportType = "unknown"
    feedback_type: str = ""
    recipients: list[ReportRecipient] = field(default_factory=list)
    original: OriginalMessage = field(default_factory=OriginalMessage)
    arf: ArfFields | None = None
    subject: str = ""  # of the report itself (an auto-reply's subject)
    reporting_mta: str = ""
    source: str = ""  # which rule found it: rfc3464, arf, ses-json, text, auto-reply, ...


def parse_report(raw: bytes) -> Report:
    """Read one received message. Never raises: what cannot be read is type "unknown"."""
    try:
        return _parse(raw[:MAX_BYTES] if isinstance(raw, bytes | bytearray) else b"")
    except Exception:  # noqa: BLE001 - hostile input must give a Report, not a traceback
        return Report(source="error")


# --- message walking ---------------------------------------------------------------------------

@dataclass
class _Parts:
    dsn: list[Message | str] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)
    returned: list[Message] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    report_type: str = ""


def _walk(msg: Message, out: _Parts, depth: int = 0, budget: list[int] | None = None) -> None:
    budget = budget if budget is not None else [MAX_PARTS]
    if depth > MAX_DEPTH or budget[0] <= 0:
        return
    budget[0] -= 1
    ctype = msg.get_content_type()
    if ctype == "multipart/report" and not out.report_type:
        out.report_type = (msg.get_param("report-type") or "").lower()
    if ctype in ("message/delivery-status", "message/global-delivery-status"):
        out.dsn.append(msg)
    elif ctype == "message/feedback-report":
        out.feedback.append(_text(msg))
    elif ctype in ("message/rfc822", "message/global", "message/partial"):
        inner = msg.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            out.returned.append(inner[0])
    elif ctype in ("text/rfc822-headers", "message/global-headers", "text/rfc822-header"):
        out.returned.append(message_from_string(_text(msg)[:MAX_TEXT], policy=policy.compat32))
    elif msg.is_multipart():
        for sub in msg.get_payload()[:MAX_PARTS]:
            if isinstance(sub, Message):
                _walk(sub, out, depth + 1, budget)
    elif msg.get_content_maintype() == "multipart":
        # A multipart whose boundary is missing or never appears: its body is one text.
        out.texts.append(_text(msg))
    elif ctype == "text/html":
        out.html.append(_text(msg))
    elif msg.get_content_maintype() == "text" or ctype == "application/json":
        out.texts.append(_text(msg))


def _text(part: Message) -> str:
    payload = part.get_payload()
    if isinstance(payload, list):  # compat32 parses message/* as header blocks
        return "\n\n".join("\n".join(f"{k}: {v}" for k, v in m.items())
                           for m in payload if isinstance(m, Message))
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        data = str(payload).encode("utf-8", "replace")
    data = data[:MAX_TEXT]
    charset = part.get_content_charset() or "utf-8"
    try:
        text = data.decode(charset, "replace")
    except LookupError:
        text = data.decode("utf-8", "replace")
    if "\ufffd" in text and charset in ("utf-8", "us-ascii"):
        text = data.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _utf8(value: str) -> str:
    """compat32 keeps raw 8-bit header bytes as surrogates: read them as UTF-8."""
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeError:
        return value


def _header(msg: Message, name: str) -> str:
    value = msg.get(name)
    if value is None:
        return ""
    try:
        # decode_header is slow on thousands of encoded words: a header we show is short
        text = str(make_header(decode_header(_utf8(str(value)[:MAX_LINE]))))
    except Exception:  # noqa: BLE001 - a broken encoded-word is kept as it came
        text = str(value)
    return " ".join(text.split())[:MAX_LINE]


def _addr(value: str) -> str:
    value = value.strip()
    if ";" in value[:16]:  # "rfc822; a@b"
        value = value.split(";", 1)[1]
    address = parseaddr(value.strip())[1] or value.strip().strip("<>")
    return address.strip().strip("<>").strip()[:320]


# --- entry -------------------------------------------------------------------------------------

def _parse(raw: bytes) -> Report:
    msg = message_from_bytes(raw, policy=policy.compat32)
    parts = _Parts()
    _walk(msg, parts)
    report = Report(subject=_header(msg, "Subject"))
    if parts.returned:
        report.original = _original(parts.returned[0])

    texts = parts.texts or [_strip_html(h) for h in parts.html]
    if parts.feedback or parts.report_type == "feedback-report":
        return _arf(report, parts)
    if not parts.dsn and parts.returned and (
            parts.returned[0].get("X-HmXmrOriginalRecipient")
            or _COMPLAINT_SUBJECT.search(report.subject)):
        return _jmrp(report, parts.returned[0])
    ses = _ses_json(texts)
    if ses is not None:
        return _ses(report, ses)
    if not parts.dsn and re.search(r"(?im)^\s*final-recipient\s*:", "\n".join(texts)):
        parts.dsn = [re.sub(r"(?m)^[ \t]+(?=[A-Za-z-]+\s*:)", "", t) for t in texts]
    if parts.dsn:
        _dsn(report, parts)
        if report.recipients:
            _fill_from_text(report, texts)
            return report
    text = "\n".join(texts)
    if _is_auto_reply(msg, report.subject) and not _strong_bounce(msg, report.subject):
        report.type, report.source = "auto-reply", "auto-reply"
        report.recipients = []
        return report
    if _looks_like_bounce(msg, report.subject, text):
        _text_bounce(report, msg, text)
        if report.recipients:
            return report
    if _looks_like_bounce(msg, report.subject, text) and _strong_bounce(msg, report.subject):
        report.type = "bounce"  # no address found: the VERP address still names the recipient
        report.source = report.source or "text"
    return report


# --- RFC 3464 ----------------------------------------------------------------------------------

_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)\s*:\s*(.*)$")


def _blocks(text: str) -> list[dict[str, str]]:
    """Field blocks of a delivery-status or feedback-report body (continuation lines joined)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.replace("\r\n", "\n").split("\n")[:2000]:
        line = line[:MAX_LINE]
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, ""
            continue
        if line[0] in " \t" and last:
            current[last] += " " + line.strip()
            continue
        m = _FIELD.match(line)
        if m:
            last = m.group(1).lower()
            current[last] = (current[last] + ", " if last in current and last.startswith(
                "reported-uri") else "") + m.group(2).strip()
    if current:
        blocks.append(current)
    return blocks


def _dsn_blocks(part: Message | str) -> list[dict[str, str]]:
    if isinstance(part, str):
        return _blocks(part)
    payload = part.get_payload()
    if isinstance(payload, list):  # compat32 reads message/* bodies as header blocks
        raw = b"\n\n".join(m.as_bytes() for m in payload[:MAX_RECIPIENTS + 1]
                            if isinstance(m, Message))
        text = raw[:MAX_TEXT].decode("utf-8", "replace")
        blocks = _blocks(text)
        if any("final-recipient" in b or "original-recipient" in b for b in blocks):
            return blocks
    return _blocks(_text(part))  # a base64 or quoted-printable delivery-status


def _dsn(report: Report, parts: _Parts) -> None:
    for part in parts.dsn:
        for block in _dsn_blocks(part):
            if "reporting-mta" in block and not report.reporting_mta:
                report.reporting_mta = _mta(block["reporting-mta"])
            address = _addr(block.get("final-recipient", "") or block.get(
                "original-recipient", ""))
            if not address or len(report.recipients) >= MAX_RECIPIENTS:
                continue
            action = block.get("action", "").lower().split()[0] if block.get("action") else ""
            diagnostic = _diag(block.get("diagnostic-code", ""))
            m = ENHANCED.search(block.get("status", ""))
            status = ".".join(str(int(g)) for g in m.groups()) if m else ""
            report.recipients.append(_recipient(
                address, status, action, diagnostic, _mta(block.get("remote-mta", "")),
                _addr(block.get("original-recipient", "")), block.get("last-attempt-date", "")))
    actions = {r.action for r in report.recipients}
    if report.recipients and actions <= {"delivered", "relayed", "expanded"}:
        report.type = "delivery"
        for r in report.recipients:
            r.class_, r.reason = "", ""
    elif report.recipients:
        report.type = "bounce"
    report.source = "rfc3464"


def _mta(value: str) -> str:
    value = value.split(";", 1)[1] if ";" in value else value
    return " ".join(value.split())[:255]


def _diag(value: str) -> str:
    value = value.split(";", 1)[1] if re.match(r"^\s*[\w-]+\s*;", value) else value
    return " ".join(value.split())[:MAX_DIAGNOSTIC]


_SMTP_CODE = re.compile(r"(?<![\d.])([245]\d\d)(?:[ -]|$)(?!\d)")


def _recipient(address: str, status: str, action: str, diagnostic: str, remote_mta: str = "",
               original: str = "", last_attempt: str = "") -> ReportRecipient:
    m = _SMTP_CODE.search(diagnostic)
    code = int(m.group(1)) if m else None
    derived = status_of(code, diagnostic)
    # a generic Status ("5.0.0") next to a specific code in the server's words: trust the words
    if derived and (not status or (status.endswith(".0.0") and derived[0] == status[0])):
        status = derived if not derived.endswith(".0.0") or not status else status
    if not status and action == "failed":
        status = "5.0.0"
    elif not status and action == "delayed":
        status = "4.0.0"
    if not action and status:
        action = "failed" if status[0] == "5" else "delayed" if status[0] == "4" else ""
    klass, reason = ("", "")
    if action in ("failed", "delayed") or (status and status[0] in "45"):
        klass, reason = classify(code, status, diagnostic)
    return ReportRecipient(address=address, status=status, action=action, class_=klass,
                           reason=reason, diagnostic=diagnostic, remote_mta=remote_mta,
                           original_recipient=original, last_attempt=last_attempt)


def _fill_from_text(report: Report, texts: list[str]) -> None:
    """Some reports carry the server's words only in the human-readable part."""
    missing = [r for r in report.recipients if not r.diagnostic and r.action != "delivered"]
    if not missing:
        return
    found = _text_recipients("\n".join(texts), set())
    by_address = {r.address.lower(): r for r in found}
    for r in missing:
        other = by_address.get(r.address.lower())
        if other and other.diagnostic:
            better = _recipient(r.address, r.status if not r.status.endswith(".0.0") else "",
                                r.action, other.diagnostic, r.remote_mta or other.remote_mta,
                                r.original_recipient, r.last_attempt)
            r.status, r.class_, r.reason = better.status, better.class_, better.reason
            r.diagnostic, r.remote_mta = better.diagnostic, better.remote_mta


# --- returned message --------------------------------------------------------------------------

def _original(msg: Message) -> OriginalMessage:
    return OriginalMessage(
        message_id=_header(msg, "Message-ID").strip("<> ")[:998],
        return_path=_addr(_header(msg, "Return-Path")),
        subject=_header(msg, "Subject"),
        from_=_addr(_header(msg, "From")),
        to=_header(msg, "To"),
    )


# --- ARF (RFC 5965) ----------------------------------------------------------------------------

def _arf(report: Report, parts: _Parts) -> Report:
    fields: dict[str, str] = {}
    for text in parts.feedback:
        for block in _blocks(text):
            for k, v in block.items():
                fields.setdefault(k, v)
    if not fields:  # report-type=feedback-report but the fields came as text
        for block in _blocks("\n".join(parts.texts)):
            if "feedback-type" in block:
                fields.update(block)
    arf = ArfFields(
        feedback_type=fields.get("feedback-type", "").lower().split(" ")[0] or "abuse",
        user_agent=fields.get("user-agent", ""),
        source_ip=fields.get("source-ip", ""),
        original_rcpt_to=_addr(fields.get("original-rcpt-to", "")),
        original_mail_from=_addr(fields.get("original-mail-from", "")),
        reported_domain=fields.get("reported-domain", ""),
        arrival_date=fields.get("arrival-date", "") or fields.get("received-date", ""),
    )
    report.type, report.source, report.arf = "complaint", "arf", arf
    report.feedback_type = arf.feedback_type
    rcpt = arf.original_rcpt_to
    if not rcpt and report.original.to:
        tos = [a for _, a in getaddresses([report.original.to]) if "@" in a]
        rcpt = tos[0] if len(tos) == 1 else ""
    if rcpt:
        report.recipients.append(ReportRecipient(address=rcpt[:320]))
    if not report.original.return_path and arf.original_mail_from:
        report.original.return_path = arf.original_mail_from
    return report


_COMPLAINT_SUBJECT = re.compile(r"^\s*(complaint about message|abuse report|spam report|"
                                r"feedback report)", re.I)


def _jmrp(report: Report, reported: Message) -> Report:
    """Microsoft's JMRP and other complaints that are just the reported message attached."""
    rcpt = _addr(_header(reported, "X-HmXmrOriginalRecipient"))
    if not rcpt:
        tos = [a for _, a in getaddresses([report.original.to]) if "@" in a]
        rcpt = tos[0] if len(tos) == 1 else ""
    report.type, report.source, report.feedback_type = "complaint", "jmrp", "abuse"
    report.arf = ArfFields(feedback_type="abuse", original_rcpt_to=rcpt,
                           source_ip=_header(reported, "X-Reporter-IP")
                           and _header(reported, "X-Originating-IP").strip("[]"),
                           original_mail_from=report.original.return_path)
    if rcpt:
        report.recipients.append(ReportRecipient(address=rcpt))
    return report


# --- Amazon SES notifications (JSON, possibly inside an SNS envelope) --------------------------

def _ses_json(texts: list[str]) -> dict | None:
    for text in texts:
        start = text.find("{")
        if start < 0 or ("notificationType" not in text and "eventType" not in text):
            continue
        try:
            # a long line folded by a mail system puts "\n " inside a JSON string
            data, _ = json.JSONDecoder(strict=False).raw_decode(
                re.sub(r"\n[ \t]", "", text[start:start + MAX_TEXT]))
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("Message"), str):
            try:
                data = json.loads(data["Message"], strict=False)
            except ValueError:
                continue
        if isinstance(data, dict) and (data.get("notificationType") or data.get("eventType")):
            return data
    return None


def _ses(report: Report, data: dict) -> Report:
    kind = str(data.get("notificationType") or data.get("eventType") or "")
    mail = data.get("mail") if isinstance(data.get("mail"), dict) else {}
    common = mail.get("commonHeaders") if isinstance(mail.get("commonHeaders"), dict) else {}
    report.original = OriginalMessage(
        message_id=str(common.get("messageId") or mail.get("messageId") or "").strip("<>"),
        return_path=str(mail.get("source") or ""), subject=str(common.get("subject") or ""))
    report.source = "ses-json"
    section = data.get(kind.lower()) if isinstance(data.get(kind.lower()), dict) else {}
    if kind == "Bounce":
        report.type = "bounce"
        permanent = section.get("bounceType") == "Permanent"
        for item in (section.get("bouncedRecipients") or [])[:MAX_RECIPIENTS]:
            if not isinstance(item, dict) or not item.get("emailAddress"):
                continue
            diag = _diag(str(item.get("diagnosticCode") or ""))
            status = str(item.get("status") or "")
            action = str(item.get("action") or ("failed" if permanent else "delayed"))
            if not status and not diag:
                status = "5.0.0" if permanent else "4.0.0"
            r = _recipient(_addr(str(item["emailAddress"])), status, action, diag,
                           _mta(str(section.get("reportingMTA") or "")))
            report.recipients.append(r)
    elif kind == "Complaint":
        report.type = "complaint"
        report.feedback_type = str(section.get("complaintFeedbackType") or "abuse")
        report.arf = ArfFields(feedback_type=report.feedback_type,
                               user_agent=str(section.get("userAgent") or ""),
                               original_mail_from=report.original.return_path)
        for item in (section.get("complainedRecipients") or [])[:MAX_RECIPIENTS]:
            if isinstance(item, dict) and item.get("emailAddress"):
                report.recipients.append(ReportRecipient(_addr(str(item["emailAddress"]))))
    elif kind == "Delivery":
        report.type = "delivery"
        for address in (section.get("recipients") or [])[:MAX_RECIPIENTS]:
            report.recipients.append(ReportRecipient(
                _addr(str(address)), status_of(None, str(section.get("smtpResponse") or "")),
                "delivered", diagnostic=_diag(str(section.get("smtpResponse") or "")),
                remote_mta=_mta(str(section.get("remoteMtaIp") or ""))))
    return report


# --- text bounces ------------------------------------------------------------------------------

_BOUNCE_FROM = re.compile(r"mailer-daemon|postmaster|mail-?daemon|mailer@|mdaemon|"
                          r"mail delivery|bounce|nobody@|root@|daemon@|notifications?@", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status|fail|failure|notification|problem|report)|"
    r"failure notice|returned mail|mail delivery failed|could not (be )?deliver|"
    r"non[- ]?deliver|delivery has failed|returning message|mail system error|"
    r"not delivered|warning: could not|rejected|bounce|unable to deliver|nicht zustellbar|"
    r"failed delivery|delivery error|message status|permanent error|problem delivering|"
    r"返送|エラー|error", re.I)
_STRONG_SUBJECT = re.compile(r"undeliver|delivery (status|fail|failure|notification|problem)|"
                             r"failure notice|returned mail|mail delivery failed|non[- ]?deliver",
                             re.I)
_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -_]*(reply|response|respond|antwort|answer|réponse)|out of (the )?office"
    r"|ooo\b|away\b|vacation|on leave|abwesen|absence|r[ée]ponse automatique|fuera de la oficina"
    r"|自動|不在|(re:\s*)?autoreply|auto:|automatisch)", re.I)
_CUTOFF = re.compile(
    r"^\s*(?:-{2,}|={3,}|_{3,})?\s*(?:"
    r"below this line is a copy|this is a copy of the message|original message|"
    r"returned message|undelivered message|the header of the original|message headers? follow"
    r"|content-type: (?:message/rfc822|text/rfc822-headers)|headers of the original|"
    r"original message headers|original message follows|copy of (?:the |your )?message|"
    r"unsent message below|returned mail|message text follows|original mail)",
    re.I | re.M)
_ADDR = r"[A-Za-z0-9._%+'=/!#$&*^`{|}~-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
# An address that starts its line (after a bullet, or sendmail's ">>>"), then its words:
# "a@b: 550 ...", "a@b ... User unknown", "a@b (reason)", ">>> a@b <a@b>" (sendmail),
# "a@b on <date>" (Exchange 5.5/2003), "* a@b" (bulleted lists).
_ADDR_LINE = re.compile(
    rf"^\s*(?:>{{1,3}}\s*|[*\u2022]\s+)?"
    rf"(?:RCPT TO:\s*|Recipient:\s*|Failed recipient:\s*|Original-Recipient:\s*rfc822;\s*"
    rf"|Final-Recipient:\s*rfc822;\s*|To:\s*|Addressed To:\s*|Recipient address:\s*)?"
    rf"[<\"]?({_ADDR})[>\"]?(?:<mailto:[^>]*>)?"
    rf"\s*(?::|\.\.\.|,|\[|\(|$|<{_ADDR}>\s*$|on\s+(?=.*\d))\s*(.*)$", re.I)
_ADDR_PHRASE = re.compile(
    rf"(?:message|mail|delivery|deliver\w*|sent|send\w*|email)\b[^<>\n]{{0,40}}?\bto\s*:?\s*"
    rf"[<\"]?({_ADDR})"
    rf"|^\s*(?:delivery\s+)?(?:unknown|user|recipient|mailbox|address|failed|invalid|rejected"
    rf"|error)[^:\n]{{0,40}}"
    rf":\s*<?({_ADDR})>?\s*$"
    rf"|could not be delivered to:?\s*<?({_ADDR})|RCPT TO:?\s*<({_ADDR})>"
    rf"|recipient(?: address)?:?\s*<({_ADDR})>|<({_ADDR})>\s*(?:\.\.\.\s*)?"
    rf"(?:user unknown|unknown user|mailbox (?:is )?full|no such)", re.I)
_REMOTE = re.compile(
    r"host\s+(\[?[\w.-]+\]?)\s*\[[\d.:a-f]+\]|remote host\s+([\w.:-]+)\s+said"
    r"|while talking to\s+([\w.-]+)|by the server for\s+the recipient domain\s+\S+\s+by\s+([\w.-]+)"
    r"|Generating server:\s*([\w.-]+)|Remote-MTA:\s*dns;\s*([\w.-]+)"
    r"|(?:connect(?:ion)? to|talking to|from)\s+([\w-]+(?:\.[\w-]+)+)\[[\d.]+\]", re.I)
_PERMANENT = re.compile(r"permanent|fatal|failed permanently|given up|could not be delivered"
                        r"|undeliverable|rejected|was aborted", re.I)
_TEMPORARY = re.compile(r"temporar|delayed|will (be )?retr|still trying|not yet been delivered"
                        r"|deferred|will try", re.I)
_FAILED_SUBJECT = re.compile(r"fail|undeliver|returned|could not|unable|error", re.I)
_SKIP_LOCAL = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|double-bounce|abuse|root)@",
                         re.I)


def _looks_like_bounce(msg: Message, subject: str, text: str) -> bool:
    if msg.get("X-Failed-Recipients"):
        return True
    sender = _header(msg, "From") + " " + _header(msg, "Return-Path")
    return bool(_BOUNCE_FROM.search(sender) or _BOUNCE_SUBJECT.search(subject))


def _strong_bounce(msg: Message, subject: str) -> bool:
    return bool(msg.get("X-Failed-Recipients") or _STRONG_SUBJECT.search(subject)
                or re.search(r"mailer-daemon|postmaster", _header(msg, "From"), re.I))


def _text_bounce(report: Report, msg: Message, text: str) -> None:
    ignore = {a.lower() for _, a in getaddresses(
        [_header(msg, "From"), _header(msg, "To"), _header(msg, "Delivered-To"),
         _header(msg, "Reply-To")])}
    ignore |= {report.original.from_.lower(), report.original.return_path.lower()}
    cut = _CUTOFF.search(text)
    head = text[:cut.start()] if cut else text
    if not report.original.message_id and cut:
        rest = text[cut.end():].split("\n", 1)[-1].lstrip("\n")
        if _FIELD.match(rest.split("\n", 1)[0]):
            report.original = _original(message_from_string(rest[:MAX_TEXT],
                                                             policy=policy.compat32))
            ignore |= {report.original.from_.lower(), report.original.return_path.lower()}
    found = _text_recipients(head, ignore)
    for failed in _header(msg, "X-Failed-Recipients").split(","):
        address = _addr(failed)
        if address and address.lower() not in {r.address.lower() for r in found}:
            found.insert(0, _recipient(address, "", "", ""))
    if not found:
        return
    default = ("5.0.0" if _PERMANENT.search(head) or _FAILED_SUBJECT.search(report.subject)
               else "4.0.0" if _TEMPORARY.search(head + report.subject) else "")
    for r in found:
        if len(found) == 1 and not _has_code(r.diagnostic):
            diag = _first_reply(head)
            if diag:
                better = _recipient(r.address, "", "", diag, r.remote_mta or _remote(head),
                                    r.original_recipient)
                r.__dict__.update(better.__dict__)
        if not r.status and default:
            better = _recipient(r.address, default, "", r.diagnostic, r.remote_mta,
                                r.original_recipient)
            r.__dict__.update(better.__dict__)
        r.remote_mta = r.remote_mta or (_remote(head) if len(found) == 1 else "")
        # a returned message is a failure even with a 4xx reply, unless it says it will retry
        r.action = "delayed" if default == "4.0.0" else "failed"
    report.recipients = found[:MAX_RECIPIENTS]
    report.type, report.source = "bounce", "text"


def _text_recipients(text: str, ignore: set[str]) -> list[ReportRecipient]:
    """Failed addresses in a human-readable bounce, each with the lines that follow it."""
    lines = [line[:MAX_LINE] for line in text[:MAX_TEXT].split("\n")]
    hits: list[tuple[int, str, str]] = []  # line number, address, rest of the line
    for i, line in enumerate(lines):
        m = _ADDR_LINE.match(line)
        if m:
            hits.append((i, m.group(1), m.group(2)))
            continue
        p = _ADDR_PHRASE.search(line)
        if p:
            hits.append((i, next(g for g in p.groups() if g), ""))
    seen: dict[str, ReportRecipient] = {}
    for n, (i, address, rest) in enumerate(hits):
        key = address.lower().rstrip(".")
        if key in ignore or _SKIP_LOCAL.match(key) or len(seen) >= MAX_RECIPIENTS:
            continue
        end = next((j for j, other, _ in hits[n + 1:] if other.lower() != address.lower()),
               len(lines))
        block = [rest] + _paragraph(lines[i + 1:min(end, i + 12)])
        diagnostic = _diag(" ".join(x.strip() for x in block if x.strip()))
        diagnostic = re.sub(r"^\(?(reason|error|detail[s]?):\s*", "", diagnostic, flags=re.I)
        has_code = _has_code(diagnostic)
        r = _recipient(address.rstrip("."), "", "", diagnostic if has_code or diagnostic
                       else "", _remote(" ".join(block)))
        expanded = re.search(rf"\(?expanded from <?({_ADDR})>?\)", rest, re.I)
        if expanded:  # Postfix: the address we sent to was an alias of this one
            r.original_recipient = expanded.group(1)
        old = seen.get(key)
        if old is None or (has_code and not _has_code(old.diagnostic)):
            seen[key] = r
    return list(seen.values())


def _has_code(text: str) -> bool:
    return bool(_SMTP_CODE.search(text) or ENHANCED.search(text))


def _paragraph(lines: list[str]) -> list[str]:
    """Lines up to the first blank one, or the next paragraph when the first is blank
    (Exchange and Gmail put one blank line between the address and its error)."""
    out: list[str] = []
    for line in lines:
        if not line.strip():
            if out:
                break
            continue
        out.append(line)
    return out


def _first_reply(text: str) -> str:
    for line in text.split("\n")[:400]:
        s = line.strip().lstrip("#'\"")
        if re.match(r"^[45]\d\d[ -]", s) or re.search(
                r"(said|returned|error|reason)\W+[45]\d\d[ -]", s, re.I):
            return _diag(s)
    return ""


def _remote(text: str) -> str:
    m = _REMOTE.search(text)
    return next((g for g in m.groups() if g), "").strip("[]").rstrip(".") if m else ""


def _strip_html(html: str) -> str:
    html = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", html[:MAX_TEXT])
    html = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</tr>", "\n", html)
    text = re.sub(r"<[^>]{0,2000}>", "", html)
    return re.sub(r"&nbsp;", " ", text).replace("&lt;", "<").replace("&gt;", ">")


# --- auto-replies (RFC 3834) -------------------------------------------------------------------

def _is_auto_reply(msg: Message, subject: str) -> bool:
    auto = _header(msg, "Auto-Submitted").lower()
    if auto.startswith("auto-replied"):
        return True
    if any(msg.get(h) for h in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Vacation")):
        return True
    if _header(msg, "Precedence").lower() == "auto_reply" or _header(
            msg, "X-Precedence").lower() == "auto_reply":
        return True
    if _header(msg, "X-Auto-Response-Suppress") and _AUTO_SUBJECT.search(subject):
        return True
    return bool(_AUTO_SUBJECT.search(subject))


def as_json(report: Report, file: str = "") -> dict:
    """The shape `manage.py parsebounce --json` prints, one object per file."""
    return {
        "file": file, "type": report.type, "feedback_type": report.feedback_type or None,
        "recipients": [{"address": r.address, "status": r.status or None,
                        "action": r.action or None, "class": r.class_ or None,
                        "reason": r.reason or None, "diagnostic": r.diagnostic or None,
                        "remote_mta": r.remote_mta or None} for r in report.recipients],
    }
