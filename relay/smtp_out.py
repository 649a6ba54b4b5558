"""One outbound SMTP connection to one Destination: transactions in, results out.

``Session.send()`` never raises for what a server says or does: every refusal, timeout and
lost connection becomes a per-recipient Reply. The wire decisions:

- EHLO as SMTP_HOSTNAME (HELO if EHLO is refused). STARTTLS whenever offered, certificate
  not checked (RFC 7435 opportunistic TLS); if it fails, the same address is tried again
  without TLS and ``tls_note`` says so. Routes with ``required`` (STARTTLS) or ``implicit``
  (smtps) TLS verify the certificate against the route's host (SMTP_OUT_CA_FILE or the
  system store) and fail instead of falling back. AUTH (PLAIN, else LOGIN) only over TLS.
- Before MAIL, every failure concerns the host, not the message: the recipients get a
  temporary reply (451, or the server's own 4xx) and ``host_failure`` is set, so the caller
  tries the next host (a bad smarthost password is our problem: it must not bounce mail).
- PIPELINING when offered (RFC 2920): MAIL, every RCPT and DATA in one write.
- SIZE: a message larger than the server's limit fails 552 5.3.4 before MAIL is sent.
- 8BITMIME: an 8-bit message goes with BODY=8BITMIME; to a server without 8BITMIME it fails
  554 5.6.3 instead of being converted: conversion would change bytes we promise to keep
  (signatures, the message as shown in the dashboard), and every common MTA offers 8BITMIME.
- Line ends: every lone CR or LF becomes CRLF and lines starting with "." are doubled, so
  no bare LF ever reaches the wire. SIZE counts the normalised message (RFC 1870).
- DSN (RFC 3461): when offered, NOTIFY, ORCPT, RET and ENVID go on as received (xtext
  encoded again); ``dsn_passed`` tells the caller whether a "relayed" DSN is due instead.
- A second transaction on the same connection starts with RSET; a connection that died
  while idle is opened again once.
"""
from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from base64 import b64encode
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from relay.esmtp_params import xtext_encode
from relay.mx import IMPLICIT, OPPORTUNISTIC, REQUIRED, Destination

log = logging.getLogger("relay.smtp_out")

_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|\Z)")
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"^\.", re.M)
_NOTIFY = re.compile(r"(?i)NEVER|(SUCCESS|FAILURE|DELAY)(,(SUCCESS|FAILURE|DELAY)){0,2}\Z")
_ADDR_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_CHUNK = 64 * 1024
_MAX_REPLY_LINES = 100


@dataclass(frozen=True)
class Timeouts:
    """Seconds; the defaults are RFC 5321 4.5.3.2's (connect: Postfix's)."""

    connect: float = 30
    greeting: float = 300
    mail: float = 300  # also EHLO, STARTTLS, AUTH, RSET, QUIT
    rcpt: float = 300
    data_init: float = 120
    data_block: float = 180
    data_done: float = 600

    @classmethod
    def from_settings(cls) -> Timeouts:
        from django.conf import settings

        return cls(
            settings.SMTP_OUT_CONNECT_TIMEOUT, settings.SMTP_OUT_GREETING_TIMEOUT,
            settings.SMTP_OUT_MAIL_TIMEOUT, settings.SMTP_OUT_RCPT_TIMEOUT,
            settings.SMTP_OUT_DATA_INIT_TIMEOUT, settings.SMTP_OUT_DATA_BLOCK_TIMEOUT,
            settings.SMTP_OUT_DATA_DONE_TIMEOUT,
        )


@dataclass(frozen=True)
class Reply:
    """An SMTP reply (or one we made up for a failure that had none): code, RFC 3463 status
    (the server's own when it gave one, else X.0.0), and the server's words on one line."""

    code: int
    status: str
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}".rstrip()


class Rcpt(NamedTuple):
    """A recipient as received: NOTIFY ("" / "NEVER" / "SUCCESS,FAILURE,DELAY" words) and ORCPT
    ("addr-type;address", decoded) as relay.esmtp_params parsed them."""

    address: str
    notify: str = ""
    orcpt: str = ""


@dataclass(frozen=True)
class RecipientResult:
    address: str
    reply: Reply  # the RCPT reply if it was refused, else the reply to the message data
    # True when the reply was this recipient's own (its RCPT refused, or its address unfit
    # for the wire); False when it answered the transaction (MAIL, DATA, the data, the host).
    own: bool = False


@dataclass
class TransactionResult:
    """What one send() did: per-recipient replies (in the order given) and where it went."""

    recipients: list[RecipientResult]
    data_reply: Reply | None = None  # None when DATA was never answered
    dsn_passed: bool = False  # the server offered DSN, so NOTIFY/ORCPT/RET/ENVID went on
    host_failure: bool = False  # the host, not the message, failed: try the next host
    host: str = ""
    ip: str = ""
    port: int = 0
    tls_version: str = ""  # "" = no TLS
    tls_cipher: str = ""
    tls_note: str = ""  # e.g. why opportunistic STARTTLS was given up
    duration: float = 0.0
    stage: str = ""  # the last step reached: connect, greeting, ehlo, starttls, auth, mail, ...

    @property
    def delivered(self) -> list[str]:
        return [r.address for r in self.recipients if r.reply.ok]


class _Failed(Exception):
    """Ends a transaction: ``reply`` goes to every recipient not yet answered."""

    def __init__(self, reply: Reply, host_failure: bool = True, close: bool = True):
        super().__init__(str(reply))
        self.reply = reply
        self.host_failure = host_failure
        self.close = close


def parse_reply(lines: Sequence[str]) -> Reply:
    """Reply lines (without CRLF) to a Reply; the status is the first line's, if any."""
    code = int(lines[0][:3])
    texts = []
    status = ""
    for line in lines:
        text = line[4:]
        match = _ENHANCED.match(text)
        if match and match.group(1) == str(code)[0]:
            status = status or ".".join(match.groups())
            text = text[match.end():]
        texts.append(text.strip())
    text = " ".join(t for t in texts if t)
    return Reply(code, status or f"{code // 100}.0.0", text)


def wire_message(data: bytes) -> tuple[bytes, int]:
    """The message as sent after DATA (CRLF everywhere, dots doubled, no final ".") and its
    RFC 1870 size (before dot doubling)."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:  # the regex only when needed
        data = _LINE_ENDS.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    size = len(data)
    if data.startswith(b".") or b"\n." in data:
        data = _LEADING_DOT.sub(b"..", data)
    return data, size


def _unverified_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


_contexts: dict[str, ssl.SSLContext] = {}


def tls_context(verify: bool) -> ssl.SSLContext:
    """Shared client contexts (loading the CA store is slow): opportunistic or verifying."""
    key = "verify" if verify else "opportunistic"
    if key not in _contexts:
        if verify:
            from django.conf import settings

            _contexts[key] = ssl.create_default_context(cafile=settings.SMTP_OUT_CA_FILE or None)
        else:
            _contexts[key] = _unverified_context()
    return _contexts[key]


def _safe(text: str, limit: int = 300) -> str:
    """Server text for logs and results: printable, one line, bounded."""
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text[:limit]


class Session:
    """A connection to one Destination, opened on first send(), reused until quit().

    ``verify_context`` replaces the verifying TLS context (tests trust their own CA with it).
    """

    def __init__(self, destination: Destination, helo_name: str,
                 timeouts: Timeouts | None = None,
                 verify_context: ssl.SSLContext | None = None) -> None:
        self.destination = destination
        self.helo_name = helo_name
        self.timeouts = timeouts or Timeouts()
        self._verify_context = verify_context
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.extensions: dict[str, str] = {}
        self.ip = ""
        self.tls_version = ""
        self.tls_cipher = ""
        self.tls_note = ""
        self._no_starttls: set[str] = set()  # addresses where opportunistic TLS failed
        self.transactions = 0  # on the current connection
        self._stage = ""
        self._lines: list[str] = []  # the last reply's lines (EHLO keywords)

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    # -- the wire ---------------------------------------------------------------------------

    async def _read_reply(self, timeout: float) -> Reply:
        assert self._reader is not None
        lines: list[str] = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    raw = await self._reader.readline()
                    if not raw.endswith(b"\n"):
                        raise _Failed(self._lost("connection closed"))
                    line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
                    if (len(line) < 3 or not line[:3].isdigit() or line[0] not in "2345"
                            or line[3:4] not in ("", " ", "-")):
                        raise _Failed(self._lost(f"malformed reply {_safe(line, 80)!r}"))
                    if lines and line[:3] != lines[0][:3]:
                        raise _Failed(self._lost("reply lines with different codes"))
                    lines.append(line)
                    if line[3:4] != "-":
                        break
                    if len(lines) >= _MAX_REPLY_LINES:
                        raise _Failed(self._lost(f"reply longer than {_MAX_REPLY_LINES} lines"))
        except TimeoutError:
            raise _Failed(self._lost(f"timed out after {timeout:g} s")) from None
        except (ConnectionError, ssl.SSLError, ValueError, asyncio.LimitOverrunError) as exc:
            raise _Failed(self._lost(_safe(str(exc) or type(exc).__name__))) from None
        self._lines = lines
        reply = parse_reply(lines)
        reply = Reply(reply.code, reply.status, _safe(reply.text, 1000))
        if reply.code == 421:  # the server is closing: nothing more on this connection
            raise _Failed(self._said(reply))
        return reply

    def _lost(self, why: str) -> Reply:
        return Reply(451, "4.4.2", f"{self._where()}: {why} (in reply to {self._stage})")

    def _said(self, reply: Reply, code: int = 451) -> Reply:
        """A server reply that ends the session, kept in the words but always temporary."""
        keep = reply.code if reply.temporary else code
        status = reply.status if reply.temporary else "4" + reply.status[1:]
        return Reply(keep, status, f"{self._where()} said: {reply} (in reply to {self._stage})")

    def _where(self) -> str:
        return f"{self.destination.host}[{self.ip}]:{self.destination.port}"

    async def _write(self, data: bytes, timeout: float) -> None:
        assert self._writer is not None
        try:
            self._writer.write(data)
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError:
            raise _Failed(self._lost(f"write timed out after {timeout:g} s")) from None
        except (ConnectionError, ssl.SSLError, RuntimeError) as exc:
            raise _Failed(self._lost(_safe(str(exc) or type(exc).__name__))) from None

    async def _command(self, line: str, timeout: float, stage: str) -> Reply:
        self._stage = stage
        await self._write(line.encode("ascii") + b"\r\n", timeout)
        return await self._read_reply(timeout)

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.transport.abort()
        self._reader = self._writer = None
        self.extensions = {}
        self.transactions = 0

    # -- connecting -------------------------------------------------------------------------

    async def _open(self, ip: str) -> None:
        dest, t = self.destination, self.timeouts
        self.ip, self.tls_version, self.tls_cipher = ip, "", ""
        implicit = dest.tls == IMPLICIT
        self._stage = "connect"
        try:
            async with asyncio.timeout(t.connect):
                self._reader, self._writer = await asyncio.open_connection(
                    ip, dest.port, limit=64 * 1024,
                    ssl=self._context() if implicit else None,
                    server_hostname=dest.host if implicit else None,
                )
        except TimeoutError:
            raise _Failed(Reply(451, "4.4.1", f"{self._where()}: connect timed out after "
                                f"{t.connect:g} s")) from None
        except (OSError, ssl.SSLError) as exc:
            raise _Failed(Reply(451, "4.4.1", f"{self._where()}: connect failed: "
                                f"{_safe(str(exc))}")) from None
        if implicit:
            self._note_tls()
        self._stage = "greeting"
        greeting = await self._read_reply(t.greeting)
        if greeting.code != 220:
            raise _Failed(self._said(greeting))
        await self._ehlo()
        if not implicit and (dest.tls == REQUIRED or (
                "STARTTLS" in self.extensions and ip not in self._no_starttls)):
            await self._starttls()
        if dest.username:
            await self._auth()

    def _context(self) -> ssl.SSLContext:
        if self.destination.tls == OPPORTUNISTIC:
            return tls_context(verify=False)
        return self._verify_context or tls_context(verify=True)

    def _note_tls(self) -> None:
        assert self._writer is not None
        ssl_object = self._writer.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.tls_version = ssl_object.version() or ""
            self.tls_cipher = (ssl_object.cipher() or ("",))[0]

    async def _ehlo(self) -> None:
        reply = await self._command(f"EHLO {self.helo_name}", self.timeouts.mail, "EHLO")
        self.extensions = {}
        if reply.ok:
            for line in self._lines[1:]:
                keyword, _, params = line[4:].strip().partition(" ")
                self.extensions[keyword.upper()] = params.strip()
            return
        reply = await self._command(f"HELO {self.helo_name}", self.timeouts.mail, "HELO")
        if not reply.ok:
            raise _Failed(self._said(reply))

    async def _starttls(self) -> None:
        required = self.destination.tls == REQUIRED
        if "STARTTLS" not in self.extensions:
            raise _Failed(Reply(451, "4.7.10", f"{self._where()} offers no STARTTLS and this "
                                "route requires TLS"))
        reply = await self._command("STARTTLS", self.timeouts.mail, "STARTTLS")
        why = ""
        if reply.code != 220:
            why = f"STARTTLS refused: {reply}"
        else:
            assert self._writer is not None
            host = self.destination.host
            try:
                await self._writer.start_tls(
                    self._context(), server_hostname=host if required or not _is_ip(host)
                    else None, ssl_handshake_timeout=self.timeouts.mail)
            except (ssl.SSLError, OSError, TimeoutError, ConnectionError) as exc:
                why = f"TLS handshake failed: {_safe(str(exc) or type(exc).__name__)}"
        if why and required:
            raise _Failed(Reply(451, "4.7.10", f"{self._where()}: {why}; this route requires "
                                "TLS"))
        if why:
            # RFC 7435: better unencrypted than not at all. Once per address and session.
            self._no_starttls.add(self.ip)
            self.tls_note = f"{why}; sent without TLS"
            log.warning("%s: %s; trying again without TLS", self._where(), why)
            raise _Retry()
        self._note_tls()
        await self._ehlo()  # RFC 3207 4.2: forget what was said before TLS

    async def _auth(self) -> None:
        dest = self.destination
        if not self.tls_version:
            raise _Failed(Reply(451, "4.7.10", f"{self._where()}: refusing to send "
                                "credentials without TLS"))
        mechanisms = self.extensions.get("AUTH", "").upper().split()
        if "PLAIN" in mechanisms:
            token = b64encode(f"\0{dest.username}\0{dest.password}".encode()).decode()
            reply = await self._command(f"AUTH PLAIN {token}", self.timeouts.mail, "AUTH")
        elif "LOGIN" in mechanisms:
            reply = await self._command("AUTH LOGIN", self.timeouts.mail, "AUTH")
            for secret in (dest.username, dest.password):
                if reply.code != 334:
                    break
                reply = await self._command(b64encode(secret.encode()).decode(),
                                            self.timeouts.mail, "AUTH")
        else:
            raise _Failed(Reply(451, "4.7.0", f"{self._where()} offers no AUTH PLAIN or LOGIN "
                                "for this route's credentials"))
        if reply.code != 235:
            raise _Failed(self._said(reply))

    async def _connect(self) -> None:
        """Try the destination's addresses in order until one greets us; _Failed if none."""
        failure: _Failed | None = None
        for ip in self.destination.addresses:
            for _ in range(2):  # a second time without STARTTLS, if TLS failed
                try:
                    await self._open(ip)
                    return
                except _Retry:
                    self._close()
                except _Failed as exc:
                    self._close()
                    failure = exc
                    break
        assert failure is not None
        raise failure

    # -- a transaction ----------------------------------------------------------------------

    async def send(self, mail_from: str, rcpts: Sequence[Rcpt | tuple[str, str, str]],
                   data: bytes, ret: str = "", envid: str = "") -> TransactionResult:
        """One mail transaction; connects first, or RSETs a used connection (pipelined with
        MAIL when the server offers PIPELINING; a dead idle connection is opened again)."""
        started = time.monotonic()
        rcpts = [Rcpt(*r) for r in rcpts]
        answers: dict[int, Reply] = {}
        own: set[int] = set()  # answered by their own RCPT reply
        result = TransactionResult(recipients=[], host=self.destination.host,
                                   port=self.destination.port)
        reused = self.connected and self.transactions > 0
        try:
            for _ in range(2):
                if not self.connected:
                    await self._connect()
                result.dsn_passed = "DSN" in self.extensions
                try:
                    await self._transaction(mail_from, rcpts, data, ret, envid, answers, own,
                                            result, rset=reused)
                    break
                except _Stale:
                    # An idle connection the server had closed: nothing of this transaction
                    # reached it, so open a new one and start again.
                    self._close()
                    answers.clear()
                    own.clear()
                    reused = False
        except _Failed as exc:
            for i in range(len(rcpts)):
                answers.setdefault(i, exc.reply)
            result.host_failure = exc.host_failure
            if exc.close:
                self._close()
        except asyncio.CancelledError:
            self._close()
            raise
        result.recipients = [RecipientResult(r.address, answers[i], i in own)
                             for i, r in enumerate(rcpts)]
        result.ip, result.tls_version, result.tls_cipher = self.ip, self.tls_version, \
            self.tls_cipher
        result.tls_note, result.stage = self.tls_note, self._stage
        result.duration = time.monotonic() - started
        self.transactions += 1 if self.connected else 0
        return result

    async def _rset_reply(self, send: bool) -> None:
        """The reply to RSET (sent now, or already in a pipelined batch); _Stale if the
        connection turns out to be dead."""
        self._stage = "RSET"
        try:
            reply = (await self._command("RSET", self.timeouts.mail, "RSET") if send
                     else await self._read_reply(self.timeouts.mail))
        except _Failed:
            raise _Stale() from None
        if not reply.ok:
            raise _Stale()

    async def _transaction(self, mail_from: str, rcpts: list[Rcpt], data: bytes, ret: str,
                           envid: str, answers: dict[int, Reply], own: set[int],
                           result: TransactionResult, rset: bool) -> None:
        t = self.timeouts
        message, size = wire_message(data)
        mail = self._mail_command(mail_from, ret, envid, size, not data.isascii())
        rcpt_lines = {}
        for i, rcpt in enumerate(rcpts):
            line = self._rcpt_command(rcpt)
            if isinstance(line, Reply):
                answers[i] = line
                own.add(i)
            else:
                rcpt_lines[i] = line
        if not rcpt_lines:
            return
        pipelining = "PIPELINING" in self.extensions
        if rset and not pipelining:
            await self._rset_reply(send=True)
        if pipelining:
            # RFC 2920: RSET, MAIL, every RCPT and DATA in one write; DATA ends the group.
            batch = ["RSET"] * rset + [mail, *rcpt_lines.values(), "DATA"]
            await self._write("".join(f"{c}\r\n" for c in batch).encode("ascii"), t.mail)
            if rset:
                await self._rset_reply(send=False)
            self._stage = "MAIL"
            mail_reply = await self._read_reply(t.mail)
            rcpt_replies = {}
            for i in rcpt_lines:
                self._stage = "RCPT"
                rcpt_replies[i] = reply = await self._read_reply(t.rcpt)
                if mail_reply.ok and not reply.ok:
                    answers[i] = reply  # kept even if the connection is lost later
                    own.add(i)
            self._stage = "DATA"
            data_reply = await self._read_reply(t.data_init)
        else:
            mail_reply = await self._command(mail, t.mail, "MAIL")
            rcpt_replies = {}
            if mail_reply.ok:
                for i, line in rcpt_lines.items():
                    rcpt_replies[i] = reply = await self._command(line, t.rcpt, "RCPT")
                    if not reply.ok:
                        answers[i] = reply
                        own.add(i)
            data_reply = None
            if any(r.ok for r in rcpt_replies.values()):
                data_reply = await self._command("DATA", t.data_init, "DATA")
        if not mail_reply.ok:
            if data_reply is not None and data_reply.code == 354:
                await self._write(b".\r\n", t.data_block)  # a server that said 354 anyway
                await self._read_reply(t.data_done)
            raise _Failed(mail_reply, host_failure=False, close=False)
        accepted = [i for i in rcpt_replies if rcpt_replies[i].ok]
        if data_reply is None:
            return  # no recipient accepted: nothing sent
        if data_reply.code != 354:
            raise _Failed(data_reply, host_failure=False, close=False)
        if not accepted:
            # RFC 2920 3.1: DATA pipelined after refused RCPTs and accepted anyway.
            await self._write(b".\r\n", t.data_block)
            await self._read_reply(t.data_done)
            return
        self._stage = "end of DATA"
        message += b".\r\n"
        for start in range(0, len(message), _CHUNK):
            await self._write(message[start:start + _CHUNK], t.data_block)
        final = await self._read_reply(t.data_done)
        result.data_reply = final
        for i in accepted:
            answers[i] = final

    def _mail_command(self, mail_from: str, ret: str, envid: str, size: int,
                      eight_bit: bool) -> str:
        ext = self.extensions
        if not _is_address(mail_from, allow_null=True):
            raise _Failed(Reply(553, "5.1.7", f"sender address {_safe(mail_from, 100)!r} cannot "
                                "go on the wire"), host_failure=False, close=False)
        limit = ext.get("SIZE", "")
        if limit.isdigit() and int(limit) and size > int(limit):
            raise _Failed(Reply(552, "5.3.4", f"message size {size} exceeds the limit of "
                                f"{self._where()} ({int(limit)})"),
                          host_failure=False, close=False)
        if eight_bit and "8BITMIME" not in ext:
            raise _Failed(Reply(554, "5.6.3", f"8-bit message and {self._where()} does not "
                                "offer 8BITMIME (not converted)"),
                          host_failure=False, close=False)
        words = [f"MAIL FROM:<{mail_from}>"]
        if "SIZE" in ext:
            words.append(f"SIZE={size}")
        if eight_bit:
            words.append("BODY=8BITMIME")
        if "DSN" in ext:
            if ret.upper() in ("FULL", "HDRS"):
                words.append(f"RET={ret.upper()}")
            if envid:
                words.append(f"ENVID={xtext_encode(envid)}")
        return " ".join(words)

    def _rcpt_command(self, rcpt: Rcpt) -> str | Reply:
        if not _is_address(rcpt.address, allow_null=False):
            return Reply(553, "5.1.3", f"recipient address {_safe(rcpt.address, 100)!r} cannot "
                         "go on the wire")
        words = [f"RCPT TO:<{rcpt.address}>"]
        if "DSN" in self.extensions:
            # Only well-formed values go on the wire (they came checked from relay.smtpd; a
            # bad one here must not be able to add a command).
            if _NOTIFY.match(rcpt.notify):
                words.append(f"NOTIFY={rcpt.notify.upper()}")
            addr_type, _, address = rcpt.orcpt.partition(";")
            if address and _ADDR_TYPE.match(addr_type):
                words.append(f"ORCPT={addr_type};{xtext_encode(address)}")
        return " ".join(words)

    async def quit(self) -> None:
        """QUIT politely and close; never raises."""
        if self.connected:
            try:
                await self._command("QUIT", min(self.timeouts.mail, 10), "QUIT")
            except _Failed:
                pass
        self._close()


class _Stale(Exception):
    """A reused connection was dead before this transaction began."""


class _Retry(Exception):
    """Opportunistic STARTTLS failed: connect to the same address again without it."""


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_address(address: str, allow_null: bool) -> bool:
    """Printable ASCII without spaces or angle brackets: nothing that can break the line."""
    if not address:
        return allow_null
    return len(address) <= 320 and all("!" <= ch <= "~" and ch not in "<>" for ch in address)
