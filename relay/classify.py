"""Hard/soft class and reason of a failed delivery from its SMTP reply (docs/bounces.md).

One table for bounces read back from remote servers and for our own synchronous failures, like
KumoMTA's classifier: the enhanced status code decides where it is specific, then regexes on the
reply text, then the class of the code.
"""
from __future__ import annotations

import re
from typing import Literal

Class = Literal["hard", "soft"]

REASONS = ("invalid_recipient", "bad_domain", "mailbox_full", "inactive_mailbox", "spam_block",
           "policy", "message_expired", "other")
# Only these say something about the address itself; a spam block, a policy refusal or an
# expired message is about our message or our IP and must not suppress a good address.
ADDRESS_REASONS = frozenset({"invalid_recipient", "bad_domain", "inactive_mailbox", "other"})

# Enhanced codes whose subject.detail alone names the reason (RFC 3463). The generic ones
# (x.0.0, x.1.0, x.2.0, x.7.1, ...) are left to the text.
CODE_REASONS: dict[str, str] = {
    "1.1": "invalid_recipient",  # bad destination mailbox address
    "1.3": "invalid_recipient",  # bad destination mailbox address syntax
    "1.6": "invalid_recipient",  # destination mailbox has moved
    "1.2": "bad_domain",  # bad destination system address
    # x.1.10 is "null MX" in RFC 7505 but Microsoft sends it for unknown users: the text decides
    "4.4": "bad_domain",  # unable to route
    "2.1": "inactive_mailbox",
    "2.3": "policy",  # message length exceeds administrative limit
    "3.4": "policy",  # message too big for system  # mailbox disabled, not accepting messages
    "2.2": "mailbox_full",  # mailbox full
    "4.7": "message_expired",  # delivery time expired
    "7.26": "policy",  # multiple authentication checks failed (DMARC/SPF/DKIM)
    "7.27": "bad_domain",  # sender address has null MX
}

TEXT_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("mailbox_full", re.compile(
        r"mailbox (is )?full|over ?quota|quota (exceeded|exceed)|exceed(s|ed)? (the |its )?"
        r"(storage|quota|mailbox)|insufficient (storage|disk)|mailbox size limit|out of storage"
        r"|QuotaExceeded|storage allocation|disk quota|user is over|full mailbox"
        r"|mailbox (has )?exceeded", re.I)),
    ("inactive_mailbox", re.compile(
        r"(account|mailbox|user|address)( \S+)? (is |has been |was )?(disabled|deactivated|"
        r"inactive|suspended|expired|locked|closed|discontinued|blocked by the user)"
        r"|(disabled|inactive|suspended|expired|deactivated) (account|mailbox|user)"
        r"|no longer (active|in use|valid|available)|not active|account (is )?unavailable"
        r"|unused (account|mailbox)", re.I)),
    ("invalid_recipient", re.compile(
        r"user unknown|unknown user|unknown (local[- ]?part|recipient|mailbox|address|account)"
        r"|no such (user|mailbox|recipient|account|address|local user)|user not found"
        r"|(recipient|mailbox|address|user|account)( \S+)? (does not|doesn'?t|did not) exist"
        r"|(recipient|mailbox|address|user|account) (not found|not known|unknown|invalid)"
        r"|invalid (recipient|mailbox|address|user)|RecipNotFound|not a valid (user|mailbox|"
        r"recipient)|no mailbox|bad destination mailbox|not our customer|unrouteable address"
        r"|couldn'?t be found|could not be found|addressee unknown|recipient rejected"
        r"|mailbox unavailable|no valid recipients|unknown or illegal alias|invalid address"
        r"|user doesn'?t have|isn'?t a valid|not listed in", re.I)),
    ("bad_domain", re.compile(
        r"host (or domain name )?not found|domain (not found|does not exist|is not valid)"
        r"|no such domain|unknown domain|name or service not known|nxdomain|no mx"
        r"|unroutable|domain (name )?(lookup|resolution) failed|null mx|not a valid domain"
        r"|domain has no|no route to (host|domain)|invalid domain|illegal host|"
        r"host unknown|mail for \S+ loops back", re.I)),
    ("spam_block", re.compile(
        r"spam|block ?list|black ?list|\brbl\b|spamhaus|spamcop|barracuda|listed (at|in|on|by)"
        r"|reputation|junk|blocked (using|by|because)|content (was )?rejected|virus|malware"
        r"|bulk mail|abuse|phish|not accepted due to|message (was )?(rejected|refused|blocked) "
        r"(as|because|due)|poor|low reputation|\bUCE\b", re.I)),
    ("policy", re.compile(
        r"policy|not (authorized|permitted|allowed)|relay(ing)? (access )?denied|access denied"
        r"|dmarc|\bspf\b|dkim|authenticat|rate limit|too many|throttl|sender (address )?"
        r"rejected|sender verify|reverse dns|ptr record|tls required|refused|denied"
        r"|message (size|too (big|large))|size limit|prohibited|forbidden|greylist|try again later",
        re.I)),
    ("message_expired", re.compile(
        r"retry time(out)? (not reached|exceeded)|message expired|expired in queue"
        r"|delivery time expired|could not be delivered within|timeout exceeded|too old"
        r"|giving up|gave up|maximum time|queue lifetime|has been delayed", re.I)),
]

ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_TEXT_LIMIT = 4096  # reply texts are short; a hostile one must not cost more than this


def classify(code: int | None, enhanced: str = "", text: str = "") -> tuple[Class, str]:
    """(class, reason) of one failure: `code` the SMTP reply code (or None), `enhanced` its
    enhanced status ("5.1.1", or ""), `text` the reply text. Never raises."""
    m = ENHANCED.search(enhanced or "")
    klass = m.group(1) if m else (str(code)[0] if code and 200 <= code < 600 else "")
    text = (text or "")[:_TEXT_LIMIT]
    reason = ""
    if m:
        reason = CODE_REASONS.get(f"{int(m.group(2))}.{int(m.group(3))}", "")
    if not reason:
        reason = next((name for name, rx in TEXT_RULES if rx.search(text)), "")
    if not reason and m and m.group(2) == "7":
        reason = "policy"  # x.7.x: security or policy status
    reason = reason or "other"
    return _klass(klass, reason), reason


def _klass(klass: str, reason: str) -> Class:
    if reason not in ADDRESS_REASONS:
        return "soft"
    if klass == "5":
        return "hard"
    if klass == "":  # no code at all: only a clear word on the address makes it hard
        return "hard" if reason != "other" else "soft"
    return "soft"


def status_of(code: int | None, text: str) -> str:
    """The enhanced status in `text`, else one derived from the class of the SMTP code."""
    m = ENHANCED.search(text or "")
    if m and (code is None or str(code)[0] == m.group(1)):
        return ".".join(m.groups())
    if code and 400 <= code < 600:
        return f"{str(code)[0]}.0.0"
    return ""
