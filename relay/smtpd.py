"""One SMTP session: aiosmtpd's protocol with the product's rules on top.

aiosmtpd 1.4.6 gives us the command loop, STARTTLS and the AUTH exchange. We replace what it
gets wrong for a submission server: AUTH on implicit TLS (upstream #274, #281), MAIL/RCPT
with RFC 3461 parameters (case kept), the null sender, EHLO keywords, DATA (bare CR/LF refused,
998-octet lines, the Received header, group commit before "250"), enhanced status codes on every
reply, the idle timeout reply and the per-IP connection cap.
"""
from __future__ import annotations

import asyncio
import collections
import email.utils
import logging
import re
import ssl
from asyncio import sslproto
from base64 import b64decode, b64encode
from typing import TYPE_CHECKING

from aiosmtpd.smtp import MISSING, SMTP, AuthResult

from .esmtp_params import (
    ParamError,
    is_printable_ascii,
    parse_mail_params,
    parse_path,
    parse_rcpt_params,
    printable,
)
from .models import new_queue_id
from .queue_writer import Submission
from .smtp_auth import log_username

if TYPE_CHECKING:
    from .server import RelayServer

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
LINE_MAX = 998 + 2  # RFC 5321 4.5.3.1.6, with the CRLF
UNKNOWN_COMMAND = "500 5.5.2 Command not recognized"
# Replies sent at once even when more commands are buffered: the client may wait for them,
# or the connection closes right after (aiosmtpd's 502 after too many unknown commands).
_FLUSH_NOW = frozenset({b"220", b"221", b"421", b"502"})
AUTH_LINE_MAX = 12288  # RFC 4954 4: an AUTH response line may be this long, CRLF included


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


class RelaySMTP(SMTP):
    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"
    _command_names: list[str] | None = None

    def __dir__(self):
        # aiosmtpd's __init__ finds commands and AUTH mechanisms with dir()/getmembers() on
        # every connection (a few hundred getattr calls); only these names matter to it.
        cls = type(self)
        if cls._command_names is None:
            cls._command_names = [
                n for n in object.__dir__(self) if n.startswith(("smtp_", "auth_"))
            ]
        return cls._command_names

    def __init__(self, server: RelayServer, role: str):
        self.server = server
        self.role = role
        starttls = role in (ROLE_STARTTLS, ROLE_MX)
        super().__init__(
            _NO_HOOKS,
            # The mx role takes mail from anyone: its own smaller limit until AUTH.
            data_size_limit=server.mx_max_size if role == ROLE_MX else server.max_size,
            enable_SMTPUTF8=False,
            decode_data=False,
            hostname=server.hostname,
            ident="smtpeter ESMTP",
            tls_context=server.tls_context if starttls else None,
            require_starttls=False,  # we answer 538/530 with the codes the product wants
            timeout=server.preauth_idle_timeout,  # server.idle_timeout once greeted/AUTHed
            auth_required=False,  # checked in check_auth_needed, per role
            auth_require_tls=True,
            loop=server.loop,
        )
        # Room for DSN parameters (RFC 3461 4: +100 MAIL, +500 RCPT); per instance, unlike
        # aiosmtpd's class-wide dict that grows with every EHLO.
        self.command_size_limits = collections.defaultdict(
            lambda: 512, {"MAIL": 1000, "RCPT": 1000}
        )
        self.peer_ip: str | None = None
        self._held_replies: list[bytes] = []  # replies to pipelined commands, not yet sent
        self.tls_version = ""
        self.tls_cipher = ""
        self._counted = False
        self._counted_unauth = False  # counted among the IP's connections without AUTH
        self._refused: str | None = None  # the 421 reply that refuses the connection
        self._data_held = 0  # bytes of this session's DATA charged to server.unauth_data
        self._last_activity = 0.0

    # -- connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self._original_transport is None
        super().connection_made(transport)
        self._last_activity = self.loop.time()
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.tls_version = ssl_object.version() or ""
            self.tls_cipher = (ssl_object.cipher() or ("",))[0]
        if first:
            # Counted at TCP accept, before any TLS handshake: the implicit-TLS listener is a
            # plain TCP server and the session starts TLS itself (see _tls_handshake).
            peer = transport.get_extra_info("peername")
            self.peer_ip = peer[0] if peer else None
            self._refused = self.server.connection_opened(self.peer_ip, self.role)
            self._counted = self._counted_unauth = self._refused is None
            if self.role == ROLE_TLS and not self._refused:
                self._start_implicit_tls(transport)

    def _start_implicit_tls(self, transport: asyncio.BaseTransport) -> None:
        """Put asyncio's TLS layer under the session at once, in connection_made.

        Not loop.start_tls from the session task: uvloop starts reading right after
        connection_made (pause_reading there is ignored), so the ClientHello could reach
        the plain-text reader first. Set up here, every byte goes to the TLS layer.
        """
        self._tls_waiter = self.loop.create_future()
        self._tls_protocol = sslproto.SSLProtocol(
            self.loop, self, self.server.tls_context, self._tls_waiter, server_side=True,
            ssl_handshake_timeout=self.server.tls_handshake_timeout,
        )
        self._original_transport = transport
        transport.set_protocol(self._tls_protocol)
        self.transport = self._tls_protocol._app_transport
        self._tls_protocol.connection_made(transport)

    @property
    def transport(self) -> asyncio.BaseTransport | None:
        """The session's transport; None once it is closing, as after connection_lost.

        aiosmtpd's command loop runs ``while self.transport is not None`` and closes the
        transport after ``502 Too many unrecognized commands``, then goes on with every line
        already buffered: each reply would be written to the closing TLS transport (which
        raises after a second close). Reading a closing transport as None ends the loop there.
        """
        transport = self._smtp_transport
        return None if transport is None or transport.is_closing() else transport

    @transport.setter
    def transport(self, value: asyncio.BaseTransport | None) -> None:
        self._smtp_transport = value

    def _close(self) -> None:
        transport = self._smtp_transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self.server.connection_closed(self.peer_ip, authenticated=not self._counted_unauth)
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if self._refused:
            if self.role != ROLE_TLS:  # a TLS client could not read a plain-text reply
                await self.push(self._refused)
            self._close()
            return
        if self.role == ROLE_TLS and not await self._tls_handshake("implicit TLS"):
            return
        await super()._handle_client()

    async def _tls_handshake(self, kind: str) -> bool:
        """Put TLS under this session, as aiosmtpd's STARTTLS does, with a handshake timeout.

        False (after one INFO line and a close) when the handshake fails: a client that
        rejects our certificate, a scanner, a TLS version we do not speak, a timeout.
        """
        try:
            if self.role == ROLE_TLS:  # the TLS layer is already there (_start_implicit_tls)
                await self._tls_waiter
            else:
                # Plain text pipelined after STARTTLS must not be read as the first encrypted
                # command (RFC 3207 5); cleared before the handshake, since the client's first
                # encrypted command may arrive before this task resumes.
                self._reader._buffer.clear()
                self._original_transport = self.transport
                # loop.start_tls: on uvloop the TLS layer is compiled, a fraction of the CPU
                # of asyncio's pure-Python one per handshake.
                tls_transport = await self.loop.start_tls(
                    self.transport, self, self.server.tls_context, server_side=True,
                    ssl_handshake_timeout=self.server.tls_handshake_timeout,
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure ends the same way
            log.info("TLS handshake failed (%s) from %s: %s", kind, self.peer_ip,
                     _tls_failure(exc))
            self._close()
            # The TLS layer never made us its protocol, so nobody else tells us the
            # connection is gone (aiosmtpd does the same after a failed STARTTLS).
            self.connection_lost(exc)
            return False
        if self.role == ROLE_TLS:
            return True  # asyncio's TLS layer has called connection_made itself
        self._tls_protocol = _TLSInfo(tls_transport)
        # aiosmtpd's connection_made (its STARTTLS half) clears the reader's buffer, which by
        # now may hold the client's first encrypted command: keep it.
        received = bytes(self._reader._buffer)
        self.connection_made(tls_transport)
        self._reader._buffer.extend(received)
        return True

    def _timeout_cb(self) -> None:
        if self.transport is None:  # already closing: connection_lost follows
            return
        idle = self.loop.time() - self._last_activity
        if idle < self._timeout_duration:
            # DATA lines count as activity; aiosmtpd only counts commands. (The base method:
            # ours would count this rescheduling as activity too.)
            super()._reset_timeout(self._timeout_duration - idle)
            return
        log.info("idle timeout for %s", self.peer_ip)
        closing = f"421 4.4.2 {self.hostname} Idle timeout, closing\r\n".encode()
        self._writer.write(self._after_held(closing))
        super()._timeout_cb()

    def _reset_timeout(self, duration: float | None = None) -> None:
        self._last_activity = self.loop.time()
        super()._reset_timeout(duration)

    async def handle_exception(self, error: Exception) -> str:
        if self.transport is None:
            # The connection closed under a command (the client left, a timeout): nobody is
            # left to answer, and this is no fault of ours.
            log.info("session from %s ended during a command: %s", self.peer_ip,
                     printable(f"{type(error).__name__}: {error}"))
        else:
            log.exception("session error from %s", self.peer_ip)
        return "451 4.3.0 Internal error, try again later"

    # -- replies ------------------------------------------------------------------------

    async def push(self, status) -> None:
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
        data = (status.encode("ascii") if isinstance(status, str) else status) + b"\r\n"
        if (
            data[:1] in b"245" and data[:3] not in _FLUSH_NOW
            and self._reader is not None and b"\n" in self._reader._buffer
        ):
            # The client pipelined (RFC 2920): its next command is already here. Its reply goes
            # out with this one, in one TLS record and one send(), as Postfix does. Safe: a
            # command that waits for the client first sends a reply that is never held (220,
            # 334, 354), and so does one that closes the connection (221, 421, 502).
            self._held_replies.append(data)
            return
        await self._write(data)

    async def _push_lines(self, lines: list[str]) -> None:
        await self._write("".join(line + "\r\n" for line in lines).encode("ascii"))

    def _after_held(self, data: bytes) -> bytes:
        """data behind the replies held for pipelined commands (which are then sent)."""
        if self._held_replies:
            data = b"".join(self._held_replies) + data
            self._held_replies.clear()
        return data

    async def _write(self, data: bytes) -> None:
        if self.transport is None:
            # Closing or closed: what is left unsaid cannot reach the client (and a write to
            # a closing TLS transport raises).
            self._held_replies.clear()
            return
        self._writer.write(self._after_held(data))
        await self._writer.drain()

    @property
    def is_tls(self) -> bool:
        return bool(self.tls_version)

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
        self._set_rset_state()
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
        await self._push_lines(
            [f"250-{line}" for line in lines[:-1]] + [f"250 {lines[-1]}"]
        )

    def _greeted(self) -> None:
        # The mx role serves other MTAs, which never AUTH: a greeting earns them the full idle
        # timeout (RFC 5321 4.5.3.2.7). Submission clients wait for their AUTH.
        if self.role == ROLE_MX:
            self._timeout_duration = self.server.idle_timeout

    async def smtp_HELO(self, hostname: str | None) -> None:
        if await self._bad_greeting("HELO", hostname):
            return
        self._set_rset_state()
        self.session.extended_smtp = False
        self.session.host_name = hostname
        self._greeted()
        await self._push_lines([f"250 {self.hostname}"])

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
        await self._tls_handshake("STARTTLS")

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

    async def _read_auth_line(self) -> bytes | None:
        """One client line of the AUTH exchange, CRLF included; None if longer than
        AUTH_LINE_MAX (read to its end and dropped). The reader's own limit is one SMTP
        command line (1,001 octets), so longer lines come in pieces."""
        reader = self._reader
        parts: list[bytes] | None = []
        size = 0
        while True:
            try:
                piece = await reader.readuntil(b"\n")
                done = True
            except asyncio.LimitOverrunError as exc:
                piece = await reader.read(exc.consumed)
                done = False
            except asyncio.IncompleteReadError as exc:
                piece, done = exc.partial, True  # the client went away mid-line
            self._last_activity = self.loop.time()
            size += len(piece)
            if parts is not None:
                if size > AUTH_LINE_MAX:
                    parts = None
                else:
                    parts.append(piece)
            if done:
                return None if parts is None else b"".join(parts)

    async def challenge_auth(
        self, challenge: str | bytes, encode_to_b64: bool = True, log_client_response=False
    ):
        """aiosmtpd's challenge_auth with AUTH lines up to 12,288 octets (RFC 4954) instead of
        its 1,001-octet reader limit, and a clean 500 5.5.6 beyond that."""
        if isinstance(challenge, str):
            challenge = challenge.encode()
        await self.push(b"334 " + (b64encode(challenge) if encode_to_b64 else challenge))
        line = await self._read_auth_line()
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
            return AuthResult(success=False, handled=False)
        outcome = await self.server.auth.check(self.peer_ip or "", user, pw)
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
        self.server.login_used(outcome.login.id)
        if self._counted_unauth:
            self._counted_unauth = False
            self.server.connection_authenticated(self.peer_ip)
        self._timeout_duration = self.server.idle_timeout
        self.data_size_limit = self.server.max_size  # an authenticated submission on any role
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
        arg = self._strip_command_keyword(keyword, arg or "")
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
        address, rest, error = self._parse_path(arg, "FROM:")
        if error is None and rest.strip() and not self.session.extended_smtp:
            error = "501 5.5.4 Parameters need EHLO"
        if error is None:
            try:
                params = parse_mail_params(rest, self.data_size_limit)
            except ParamError as exc:
                error = str(exc)
        if error is None and params.size and not self.authenticated:
            free = self.server.unauth_data.free()
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
            address = f"postmaster@{self.server.bounce_domain}"
        if error is None and rest.strip() and not self.session.extended_smtp:
            error = "501 5.5.4 Parameters need EHLO"
        cap = self.server.mx_max_recipients if mx_intake else self.server.max_recipients
        if error is None and len(self.envelope.rcpt_tos) >= cap:
            error = "452 4.5.3 Too many recipients"
        if error is None and mx_intake and not self.server.mx_accepts(address):
            if _domain(address) != self.server.bounce_domain:
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

    def _set_post_data_state(self) -> None:
        super()._set_post_data_state()
        self.envelope.mail_from = None

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

    async def _read_message(
        self, buf: bytearray | None
    ) -> tuple[bytearray | None, int, str | None]:
        """Read DATA up to CRLF.CRLF into ``buf``: (buf or None if refused, size, problem);
        with ``buf`` None the message is read to its end and dropped.

        Complete lines already buffered by the reader are taken as one block (found by peeking
        at the StreamReader's buffer, as aiosmtpd itself does for STARTTLS) and checked with
        bytes methods; a line still arriving is read on its own. Either way the message ends
        only at CRLF "." CRLF at a line start, and every line is checked alike: at most 998
        octets, no bare CR or LF, the size limit.
        """
        limit = self.data_size_limit
        size = 0
        problem = None
        reader = self._reader
        loop = self.loop
        continuation = False  # inside a line longer than the reader's limit
        while True:
            pending = getattr(reader, "_buffer", None)
            if pending and not continuation:  # we are at a line start
                if pending.startswith(b".\r\n"):
                    await reader.readexactly(3)
                    break
                end = pending.find(b"\r\n.\r\n")
                take = end + 2 if end >= 0 else pending.rfind(b"\r\n") + 2
                if take >= 2:  # whole lines, no end of data among them but maybe right after
                    block = await reader.readexactly(take)
                    self._last_activity = loop.time()
                    if end >= 0:
                        await reader.readexactly(3)
                    if block[:1] == b".":
                        block = block[1:]
                    block = block.replace(b"\r\n.", b"\r\n")
                    size += len(block)
                    if buf is not None:
                        crlf = block.count(b"\r\n")
                        if limit and size > limit:
                            problem, buf = "big", None
                        elif block.count(b"\r") != crlf or block.count(b"\n") != crlf:
                            problem, buf = "bare", None
                        elif len(block) > LINE_MAX and max(map(len, block.split(b"\r\n"))) > 998:
                            problem, buf = "long", None
                        elif not self._hold(len(block)):
                            problem, buf = "busy", None
                        else:
                            buf += block
                        if buf is None:
                            self._release()
                    if end >= 0:
                        break
                    continue
            try:
                line = await reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as exc:
                # A line longer than the reader's limit: drop it piece by piece. What follows
                # up to the next CRLF is still that line, never a line start (so never ".").
                await reader.read(exc.consumed)
                problem, buf, continuation = problem or "long", None, True
                self._release()
                continue
            self._last_activity = loop.time()
            if continuation:
                continuation = False
                size += len(line)
                continue
            if line == b".\r\n":
                break
            if line[:1] == b".":
                line = line[1:]
            size += len(line)
            if buf is None:
                continue
            if len(line) > LINE_MAX:
                problem, buf = "long", None
            elif limit and size > limit:
                problem, buf = "big", None
            elif line.count(b"\n") != 1 or line.count(b"\r") != 1:
                problem, buf = "bare", None
            elif not self._hold(len(line)):
                problem, buf = "busy", None
            else:
                buf += line
            if buf is None:
                self._release()
        return buf, size, problem

    def _hold(self, n: int) -> bool:
        """Charge ``n`` more bytes of this session's DATA to the budget for unauthenticated
        DATA (an authenticated session is not charged); False past that budget."""
        if self.authenticated:
            return True
        if not self.server.unauth_data.take(n):
            return False
        self._data_held += n
        return True

    def _release(self) -> None:
        """Give back what _hold charged: the message is stored, refused or dropped."""
        if self._data_held:
            self.server.unauth_data.give(self._data_held)
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
            buf, size, problem = await self._read_message(bytearray(header))
        else:
            buf, size, problem = await self._read_message(None)
            problem = problem or "busy"
        limit = self.data_size_limit
        envelope = self.envelope
        self._set_post_data_state()
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
                        self.server.unauth_data.held)
            await self.push(_NO_ROOM)
            return
        if problem == "big" or (limit and size > limit):
            log.warning("DATA refused from %s: %d octets over the limit", self.peer_ip, size)
            await self.push(f"552 5.3.4 Message size exceeds fixed maximum message size ({limit})")
            return
        login = self.session.auth_data if self.authenticated else None
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
            await self.server.writer.store(sub)
        except Exception as exc:  # noqa: BLE001 - the writer logged the cause
            log.error("message %s from %s not queued: %s", queue_id, self.peer_ip, exc)
            await self.push("451 4.3.0 Could not queue the message, try again later")
            return
        log.info(
            "queued %s: from=<%s> nrcpt=%d size=%d login=%s ip=%s tls=%s",
            queue_id, sub.mail_from, len(sub.recipients), len(sub.raw),
            login.username if login else "-", self.peer_ip, self.tls_version or "-",
        )
        await self.push(f"250 2.0.0 Ok: queued as {queue_id}")


_NO_ROOM = "452 4.3.1 Insufficient system storage, try again later"


def _tls_failure(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason  # e.g. TLSV1_ALERT_UNKNOWN_CA, UNSUPPORTED_PROTOCOL, HTTP_REQUEST
    return printable(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def _upper_first(arg: str | None) -> str | None:
    # Mechanism names are case-insensitive; the initial response is base64 and must keep case.
    if not arg:
        return arg
    mech, _, rest = arg.partition(" ")
    return f"{mech.upper()} {rest}"


class _TLSInfo:
    """What aiosmtpd reads from its TLS protocol object (`_extra`, for session.ssl) and tests
    for truth (TLS active), for a TLS layer set up by loop.start_tls."""

    def __init__(self, transport: asyncio.BaseTransport):
        self._extra = {
            key: transport.get_extra_info(key)
            for key in ("ssl_object", "peercert", "cipher", "compression", "sslcontext")
        }


class _NoHooks:
    """aiosmtpd wants a handler object; every hook lives in RelaySMTP itself."""

    def __dir__(self):
        return []


_NO_HOOKS = _NoHooks()
