"""The SMTP command handlers and their policy: what each command may do, per role.

On top of relay.wire (aiosmtpd's session with our TLS, reply writing and DATA reader): AUTH on
implicit TLS (upstream #274, #281), MAIL/RCPT with RFC 3461 parameters (case kept), the null
sender, EHLO keywords, DATA (bare CR/LF refused, 998-octet lines, the Received header, group
commit before "250"), enhanced status codes on every reply and the per-IP connection cap.
What a session needs from the process that runs it comes in a SessionContext.
"""
from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import ssl
from base64 import b64decode, b64encode
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from aiosmtpd.smtp import MISSING, AuthResult

from . import metrics
from .esmtp_params import (
    ParamError,
    is_printable_ascii,
    parse_mail_params,
    parse_path,
    parse_rcpt_params,
    printable,
)
from .limits import ByteBudget
from .models import new_queue_id
from .queue_writer import Submission
from .smtp_auth import Outcome, log_username
from .wire import AUTH_LINE_MAX, WireSMTP

log = logging.getLogger("relay.smtpd")

ROLE_TLS = "tls"  # TLS from the first byte (465)
ROLE_STARTTLS = "starttls"  # submission, STARTTLS required before AUTH (587, 2525)
ROLE_MX = "mx"  # bounces to BOUNCE_DOMAIN without AUTH; STARTTLS offered, not required (25)

# Enhanced status codes (RFC 3463) for replies aiosmtpd writes without one.
DEFAULT_ENHANCED = {
    "221": "2.0.0", "235": "2.7.0", "250": "2.0.0", "252": "2.5.0",
    "421": "4.3.0", "451": "4.3.0", "452": "4.5.3", "454": "4.7.0",
    "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4",
    "530": "5.7.0", "535": "5.7.8", "538": "5.7.11", "550": "5.0.0", "552": "5.3.4",
    "553": "5.1.3", "554": "5.5.0", "555": "5.5.4",
}
_HAS_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(?: |$)")
_HELO_UNSAFE = re.compile(r"[^!-~]|[()\\\[\]]")
UNKNOWN_COMMAND = "500 5.5.2 Command not recognized"
SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"  # runsmtp is draining


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


class Connections(Protocol):
    """The process's count of open connections, per IP and in all."""

    def opened(self, ip: str | None, role: str) -> str | None:
        """Count a new connection; None, or the 421 reply that refuses it."""

    def authenticated(self, ip: str | None) -> None: ...

    def closed(self, ip: str | None, authenticated: bool) -> None: ...


@dataclass(frozen=True)
class SessionContext:
    """What a session needs from the process that runs it (relay.server builds one)."""

    loop: asyncio.AbstractEventLoop
    hostname: str
    tls_context: ssl.SSLContext  # reloaded in place on SIGHUP
    tls_handshake_timeout: float
    idle_timeout: float
    preauth_idle_timeout: float  # until a submission session has AUTHed (mx: greeted)
    max_size: int
    max_recipients: int
    mx_max_size: int
    mx_max_recipients: int
    bounce_domain: str
    connections: Connections
    unauth_data: ByteBudget  # bytes of DATA held for sessions without AUTH, all together
    check_auth: Callable[[str, str, str], Awaitable[Outcome]]  # (ip, username, password)
    login_used: Callable[[int], None]
    mx_accepts: Callable[[str], bool]  # whether the mx role takes this address without AUTH
    store: Callable[[Submission], Awaitable[None]]  # returns once the message is committed
    draining: Callable[[], bool] = lambda: False  # the process is stopping: no new transaction
    # SENDER_UNVERIFIED=refuse: (owner id, message) -> the 5xx reply that refuses it, or None
    # (relay.signing.refusal); None: every From domain is taken.
    sender_refusal: Callable[[int | None, bytes], Awaitable[str | None]] | None = None


class RelaySMTP(WireSMTP):
    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"

    def __init__(self, ctx: SessionContext, role: str):
        self.ctx = ctx
        self.role = role
        super().__init__(
            loop=ctx.loop,
            hostname=ctx.hostname,
            # The mx role takes mail from anyone: its own smaller limit until AUTH.
            data_size_limit=ctx.mx_max_size if role == ROLE_MX else ctx.max_size,
            tls_context=ctx.tls_context,
            implicit_tls=role == ROLE_TLS,
            starttls=role in (ROLE_STARTTLS, ROLE_MX),
            tls_handshake_timeout=ctx.tls_handshake_timeout,
            timeout=ctx.preauth_idle_timeout,  # ctx.idle_timeout once greeted/AUTHed
        )
        self._counted = False
        self._counted_unauth = False  # counted among the IP's connections without AUTH
        self._data_held = 0  # bytes of this session's DATA charged to ctx.unauth_data
        self._queued: list[str] = []  # queue ids accepted in this session, for its last line

    # -- connection ---------------------------------------------------------------------

    def accepted(self) -> str | None:
        refused = self.ctx.connections.opened(self.peer_ip, self.role)
        self._counted = self._counted_unauth = refused is None
        if self._counted:
            metrics.session(self.role, 1)
        return refused

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self._counted = False
            metrics.session(self.role, -1)
            # One line per session: who it was and which messages it left, to follow them.
            login = self.session.auth_data if self.authenticated else None
            log.info("session from %s (%s port) closed: login=%s queued=%d%s", self.peer_ip,
                     self.role, login.username if login else "-", len(self._queued),
                     f" ({' '.join(self._queued[:20])})" if self._queued else "")
            self.ctx.connections.closed(self.peer_ip, authenticated=not self._counted_unauth)
        super().connection_lost(error)

    # -- replies ------------------------------------------------------------------------

    async def push(self, status: str | bytes) -> None:
        if isinstance(status, str) and status.startswith('500 Error: command "'):
            # aiosmtpd echoes the unknown line, which may be a credential sent after an AUTH
            # refusal (538, 503): never send it back, never log it.
            status = UNKNOWN_COMMAND
        if isinstance(status, str) and len(status) > 4 and status[3] in " -":
            enhanced = DEFAULT_ENHANCED.get(status[:3])
            if enhanced and not _HAS_ENHANCED.match(status, 4):
                status = f"{status[:4]}{enhanced} {status[4:]}"
            if status[0] in "45":
                # Every refusal leaves a line, whichever layer (ours or aiosmtpd's) made it.
                log.info("refused %s (%s port): %s", self.peer_ip, self.role,
                         printable(status))
        await super().push(status)

    @property
    def authenticated(self) -> bool:
        return bool(self.session and self.session.authenticated)

    async def _refuse_unauthenticated(self) -> bool:
        """On submission ports nothing but EHLO/STARTTLS/AUTH/NOOP/RSET/QUIT works before AUTH."""
        if self.role == ROLE_MX or self.authenticated:
            return False
        if not self.is_tls:
            await self.push("530 5.7.0 Must issue a STARTTLS command first")
        else:
            await self.push("530 5.7.0 Authentication required")
        return True

    async def check_auth_needed(self, caller_method: str) -> bool:
        return await self._refuse_unauthenticated()

    # -- greeting and TLS ---------------------------------------------------------------

    async def _bad_greeting(self, command: str, hostname: str | None) -> bool:
        if not hostname:
            await self.push(f"501 5.5.4 Syntax: {command} hostname")
            return True
        if not is_printable_ascii(hostname):
            # NUL or control characters: stored with the message, they would break the write
            # (PostgreSQL refuses NUL in text) and the Received header.
            log.info("%s refused from %s: control characters in %r", command, self.peer_ip,
                     hostname[:100])
            await self.push(f"501 5.5.4 {command} argument must be printable ASCII")
            return True
        return False

    async def smtp_EHLO(self, hostname: str | None) -> None:
        if await self._bad_greeting("EHLO", hostname):
            return
        self.reset_state()
        self.session.extended_smtp = True
        self.session.host_name = hostname
        self._greeted()
        lines = [
            self.hostname, "PIPELINING", f"SIZE {self.data_size_limit}", "8BITMIME",
            "ENHANCEDSTATUSCODES", "DSN",
        ]
        if self.tls_context is not None and not self.is_tls:
            lines.append("STARTTLS")
        if self.is_tls:
            lines.append("AUTH PLAIN LOGIN")
        await self.push_lines(
            [f"250-{line}" for line in lines[:-1]] + [f"250 {lines[-1]}"]
        )

    def _greeted(self) -> None:
        # The mx role serves other MTAs, which never AUTH: a greeting earns them the full idle
        # timeout (RFC 5321 4.5.3.2.7). Submission clients wait for their AUTH.
        if self.role == ROLE_MX:
            self.set_idle_timeout(self.ctx.idle_timeout)

    async def smtp_HELO(self, hostname: str | None) -> None:
        if await self._bad_greeting("HELO", hostname):
            return
        self.reset_state()
        self.session.extended_smtp = False
        self.session.host_name = hostname
        self._greeted()
        await self.push_lines([f"250 {self.hostname}"])

    async def smtp_STARTTLS(self, arg: str) -> None:
        if self.is_tls:
            await self.push("503 5.5.1 TLS is already active")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: STARTTLS")
            return
        if self.tls_context is None:
            await self.push("454 4.7.0 TLS not available")
            return
        await self.push("220 2.0.0 Ready to start TLS")
        await self.start_tls()

    # -- AUTH ---------------------------------------------------------------------------

    async def smtp_AUTH(self, arg: str) -> None:
        if self.session.host_name is not None and not self.session.extended_smtp:
            await self.push("503 5.5.1 Send EHLO first")  # AUTH is an ESMTP extension
            return
        if self.envelope is not None and self.envelope.mail_from is not None:
            await self.push("503 5.5.1 AUTH is not allowed during a mail transaction")
            return
        if arg and arg.split()[0].upper() not in ("PLAIN", "LOGIN") and self.is_tls:
            log.info("AUTH with unknown mechanism from %s", self.peer_ip)
        await super().smtp_AUTH(_upper_first(arg))

    async def challenge_auth(
        self, challenge: str | bytes, encode_to_b64: bool = True, log_client_response=False
    ):
        """aiosmtpd's challenge_auth with AUTH lines up to 12,288 octets (RFC 4954) instead of
        its 1,001-octet reader limit, and a clean 500 5.5.6 beyond that."""
        if isinstance(challenge, str):
            challenge = challenge.encode()
        await self.push(b"334 " + (b64encode(challenge) if encode_to_b64 else challenge))
        line = await self.read_auth_line()
        if line is None:
            log.info("AUTH refused from %s: response line over %d octets", self.peer_ip,
                     AUTH_LINE_MAX)
            await self.push("500 5.5.6 Authentication exchange line is too long")
            return MISSING
        blob = line.strip()
        if blob == b"*":  # RFC 4954: the client cancels the exchange
            log.info("AUTH cancelled by %s", self.peer_ip)
            await self.push("501 5.7.0 Authentication cancelled")
            return MISSING
        try:
            return b64decode(blob, validate=True)
        except ValueError:
            await self.push("501 5.5.2 Cannot decode base64")
            return MISSING

    async def _initial_or_challenge(self, args: list[str], challenge: str) -> bytes | None:
        if len(args) == 1:
            blob = await self.challenge_auth(challenge)
            return None if blob is MISSING else blob
        if args[1] == "=":  # RFC 4954: an empty initial response
            return b""
        try:
            return b64decode(args[1].encode(), validate=True)
        except ValueError:
            await self.push("501 5.5.2 Cannot decode base64")
            return None

    async def auth_PLAIN(self, _, args: list[str]) -> AuthResult:
        blob = await self._initial_or_challenge(args, "")
        if blob is None:
            return AuthResult(success=False, handled=True)
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            await self.push("501 5.5.2 Cannot split the PLAIN response")
            return AuthResult(success=False, handled=True)
        authzid, username, password = parts
        if authzid and authzid != username:
            log.warning("AUTH PLAIN with a different authorization identity from %s",
                        self.peer_ip)
            return AuthResult(success=False, handled=False)
        return await self._check_credentials(username, password)

    async def auth_LOGIN(self, _, args: list[str]) -> AuthResult:
        username = await self._initial_or_challenge(args, self.AuthLoginUsernameChallenge)
        if username is None:
            return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        return await self._check_credentials(username, password)

    async def _check_credentials(self, username: bytes, password: bytes) -> AuthResult:
        try:
            user, pw = username.decode("utf-8"), password.decode("utf-8")
        except UnicodeDecodeError:
            log.warning("AUTH with undecodable credentials from %s", self.peer_ip)
            metrics.auth_failed("invalid")
            return AuthResult(success=False, handled=False)
        outcome = await self.ctx.check_auth(self.peer_ip or "", user, pw)
        if outcome.login is None:
            metrics.auth_failed("busy" if outcome.busy else "throttled" if outcome.throttled
                                else "invalid")
        if outcome.busy:
            return AuthResult(
                success=False, handled=False,
                message="454 4.7.0 Too many authentication checks in progress, try again later",
            )
        if outcome.throttled:
            return AuthResult(
                success=False, handled=False,
                message="454 4.7.0 Too many failed authentication attempts, try again later",
            )
        if outcome.login is None:
            return AuthResult(success=False, handled=False)
        self.ctx.login_used(outcome.login.id)
        if self._counted_unauth:
            self._counted_unauth = False
            self.ctx.connections.authenticated(self.peer_ip)
        self.set_idle_timeout(self.ctx.idle_timeout)
        self.data_size_limit = self.ctx.max_size  # an authenticated submission on any role
        log.info("AUTH ok: ip=%s username='%s' verified=%s", self.peer_ip, log_username(user),
                 "cache" if outcome.cached else "argon2")
        return AuthResult(success=True, auth_data=outcome.login)

    # -- the envelope -------------------------------------------------------------------

    def _parse_path(
        self, arg: str | None, keyword: str, postmaster: bool = False
    ) -> tuple[str | None, str, str | None]:
        """(address, rest, error reply) for ``FROM:<addr> params`` / ``TO:<addr> params``;
        ``postmaster`` also takes a bare <Postmaster> (RFC 5321 4.1.1.3)."""
        syntax = f"501 5.5.4 Syntax: {'MAIL FROM' if keyword == 'FROM:' else 'RCPT TO'}:<address>"
        arg = self.strip_keyword(keyword, arg or "")
        if not arg:
            return None, "", syntax
        try:
            address, rest = parse_path(
                arg, allow_null=keyword == "FROM:", allow_postmaster=postmaster
            )
        except ParamError as exc:
            return None, "", str(exc)
        return address, rest, None

    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        if await self._refuse_unauthenticated():
            return
        if self.envelope.mail_from is not None:
            await self.push("503 5.5.1 Nested MAIL command")
            return
        if self.ctx.draining():
            # The transaction before this one finished; a new one waits for another process.
            log.info("MAIL refused from %s: shutting down", self.peer_ip)
            await self.push(SHUTTING_DOWN)
            self.close_connection()
            return
        address, rest, error = self._parse_path(arg, "FROM:")
        if error is None and rest.strip() and not self.session.extended_smtp:
            error = "501 5.5.4 Parameters need EHLO"
        if error is None:
            try:
                params = parse_mail_params(rest, self.data_size_limit)
            except ParamError as exc:
                error = str(exc)
        if error is None and params.size and not self.authenticated:
            free = self.ctx.unauth_data.free()
            if free is not None and params.size > free:
                error = _NO_ROOM  # RFC 1870 6.1: a size we cannot take now, but may later
        if error is not None:
            log.info("MAIL refused from %s: %s", self.peer_ip, printable(error))
            await self.push(error)
            return
        self.envelope.mail_from = address
        self.envelope.mail_params = params
        self.envelope.rcpt_params = []
        await self.push("250 2.1.0 Sender ok")

    async def smtp_RCPT(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        if await self._refuse_unauthenticated():
            return
        if self.envelope.mail_from is None:
            await self.push("503 5.5.1 Need MAIL command first")
            return
        mx_intake = self.role == ROLE_MX and not self.authenticated
        address, rest, error = self._parse_path(arg, "TO:", postmaster=mx_intake)
        if error is None and address.lower() == "postmaster":
            # RFC 5321 4.5.1: <Postmaster> without a domain; stored as at BOUNCE_DOMAIN.
            address = f"postmaster@{self.ctx.bounce_domain}"
        if error is None and rest.strip() and not self.session.extended_smtp:
            error = "501 5.5.4 Parameters need EHLO"
        cap = self.ctx.mx_max_recipients if mx_intake else self.ctx.max_recipients
        if error is None and len(self.envelope.rcpt_tos) >= cap:
            error = "452 4.5.3 Too many recipients"
        if error is None and mx_intake and not self.ctx.mx_accepts(address):
            if _domain(address) != self.ctx.bounce_domain:
                error = "550 5.7.1 Relaying denied: authenticate to send mail"
            else:
                log.info("RCPT to an unknown mx address from %s: %s", self.peer_ip,
                         printable(address, 100))
                error = "550 5.1.1 No such mailbox here"
        if error is None:
            try:
                params = parse_rcpt_params(rest)
            except ParamError as exc:
                error = str(exc)
        if error is not None:
            log.info("RCPT refused from %s: %s", self.peer_ip, printable(error))
            await self.push(error)
            return
        self.envelope.rcpt_tos.append(address)
        self.envelope.rcpt_params.append(params)
        await self.push("250 2.1.5 Recipient ok")

    # -- DATA -----------------------------------------------------------------------------

    def received_header(self, queue_id: str) -> bytes:
        helo = _HELO_UNSAFE.sub("", self.session.host_name or "")[:255] or "unknown"
        proto = "ESMTP" if self.session.extended_smtp else "SMTP"
        if self.is_tls:
            proto += "S"
        if self.authenticated:
            proto += "A"
        lines = [f"Received: from {helo} ([{self.peer_ip}])"]
        if self.is_tls:
            lines.append(f"\t(using {self.tls_version} with cipher {self.tls_cipher})")
        lines.append(f"\tby {self.hostname} (smtpeter) with {proto} id {queue_id}")
        if len(self.envelope.rcpt_tos) == 1:
            lines.append(f"\tfor <{self.envelope.rcpt_tos[0]}>;")
        else:
            lines[-1] += ";"
        lines.append("\t" + email.utils.format_datetime(email.utils.localtime()))
        return ("\r\n".join(lines) + "\r\n").encode("ascii", "replace")

    def _hold(self, n: int) -> bool:
        """Charge ``n`` more bytes of this session's DATA to the budget for unauthenticated
        DATA (an authenticated session is not charged); False past that budget."""
        if self.authenticated:
            return True
        if not self.ctx.unauth_data.take(n):
            return False
        self._data_held += n
        return True

    def _release(self) -> None:
        """Give back what _hold charged: the message is stored, refused or dropped."""
        if self._data_held:
            self.ctx.unauth_data.give(self._data_held)
            self._data_held = 0

    async def smtp_DATA(self, arg: str) -> None:
        try:
            await self._data(arg)
        finally:
            self._release()  # also when the client goes away mid-message

    async def _data(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if await self._refuse_unauthenticated():
            return
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Need RCPT command first")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        queue_id = new_queue_id()
        header = self.received_header(queue_id)
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        # No reference to the buffer is kept here, so that a refused message's bytes go as
        # soon as the reader drops them, not when the client's final dot arrives.
        if self._hold(len(header)):
            buf, size, problem = await self.read_data(bytearray(header), self._hold, self._release)
        else:
            buf, size, problem = await self.read_data(None, self._hold, self._release)
            problem = problem or "busy"
        limit = self.data_size_limit
        envelope = self.envelope
        self.end_transaction()
        if problem == "bare":
            log.warning("DATA refused from %s: bare CR or LF", self.peer_ip)
            await self.push("550 5.6.0 Bare CR or LF in message: lines must end with CRLF")
            return
        if problem == "long":
            log.warning("DATA refused from %s: line over 998 octets", self.peer_ip)
            await self.push("500 5.5.2 Line too long: at most 998 octets per line")
            return
        if problem == "busy":
            log.warning("DATA refused from %s: %d octets without AUTH would pass "
                        "SMTP_UNAUTH_DATA_BUDGET (%d octets held)", self.peer_ip, size,
                        self.ctx.unauth_data.held)
            await self.push(_NO_ROOM)
            return
        if problem == "big" or (limit and size > limit):
            log.warning("DATA refused from %s: %d octets over the limit", self.peer_ip, size)
            await self.push(f"552 5.3.4 Message size exceeds fixed maximum message size ({limit})")
            return
        login = self.session.auth_data if self.authenticated else None
        if login is not None and self.ctx.sender_refusal is not None:
            refusal = await self.ctx.sender_refusal(login.owner_id, buf)
            if refusal:
                log.info("DATA refused from %s: %s", self.peer_ip, refusal)
                await self.push(refusal)
                return
        mail_params = envelope.mail_params
        sub = Submission(
            queue_id=queue_id,
            kind="submission" if login is not None else "bounce",
            login_id=login.id if login else None,
            owner_id=login.owner_id if login else None,
            mail_from=envelope.mail_from,
            ret=mail_params.ret,
            envid=mail_params.envid,
            body=mail_params.body,
            client_ip=self.peer_ip,
            helo=self.session.host_name or "",
            tls_version=self.tls_version,
            raw=buf,
            recipients=[
                (addr, p.notify, p.orcpt)
                for addr, p in zip(envelope.rcpt_tos, envelope.rcpt_params, strict=True)
            ],
        )
        del buf
        try:
            await self.ctx.store(sub)
        except Exception as exc:  # noqa: BLE001 - the writer logged the cause
            log.error("message %s from %s not queued: %s", queue_id, self.peer_ip, exc)
            await self.push("451 4.3.0 Could not queue the message, try again later")
            return
        metrics.accepted(sub.kind)
        self._queued.append(queue_id)
        log.info(
            "queued %s: from=<%s> nrcpt=%d size=%d login=%s ip=%s tls=%s",
            queue_id, sub.mail_from, len(sub.recipients), len(sub.raw),
            login.username if login else "-", self.peer_ip, self.tls_version or "-",
        )
        await self.push(f"250 2.0.0 Ok: queued as {queue_id}")


_NO_ROOM = "452 4.3.1 Insufficient system storage, try again later"


def _upper_first(arg: str | None) -> str | None:
    # Mechanism names are case-insensitive; the initial response is base64 and must keep case.
    if not arg:
        return arg
    mech, _, rest = arg.partition(" ")
    return f"{mech.upper()} {rest}"
