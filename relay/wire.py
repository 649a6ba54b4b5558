"""The one place that touches aiosmtpd's (and asyncio's) internals: TLS under a session, the
reply writer that holds replies to pipelined commands, the idle timeout, the DATA reader.

aiosmtpd 1.4.6 gives us the command loop, STARTTLS and the AUTH exchange; what this module
replaces leans on its private attributes (``_handle_client``, ``_timeout_cb``, the reader's
``_buffer``, ``_tls_protocol``, ``_original_transport``), which any other version may change.
So it refuses to load with another version (AIOSMTPD_VERSION, pinned in pyproject.toml too):
a version bump means reading aiosmtpd's diff against this module first.
relay/smtpd.py holds the command handlers and their policy on top of WireSMTP, and touches no
private name of aiosmtpd's (tests/site/test_layout.py checks).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import ssl
from asyncio import sslproto
from collections.abc import Callable

import aiosmtpd
from aiosmtpd.smtp import SMTP

from .esmtp_params import printable

log = logging.getLogger("relay.smtpd")

AIOSMTPD_VERSION = "1.4.6"


def check_aiosmtpd_version(installed: str) -> None:
    """RuntimeError unless ``installed`` is the aiosmtpd version this module was written for."""
    if installed != AIOSMTPD_VERSION:
        raise RuntimeError(
            f"aiosmtpd {installed} is installed, but relay/wire.py overrides the internals of "
            f"aiosmtpd {AIOSMTPD_VERSION} (pinned in pyproject.toml): install that version, or "
            f"check relay/wire.py against the new one and then change AIOSMTPD_VERSION"
        )


check_aiosmtpd_version(aiosmtpd.__version__)

LINE_MAX = 998 + 2  # RFC 5321 4.5.3.1.6, with the CRLF
AUTH_LINE_MAX = 12288  # RFC 4954 4: an AUTH response line may be this long, CRLF included
# Replies sent at once even when more commands are buffered: the client may wait for them,
# or the connection closes right after (aiosmtpd's 502 after too many unknown commands).
_FLUSH_NOW = frozenset({b"220", b"221", b"421", b"502"})
# asyncio's TLS layer keeps a receive buffer of SSLProtocol.max_size per connection, 256 KiB
# (Python 3.11): 1,000 idle TLS sessions held 381 MiB. One TLS record (16 KiB plus its
# header) per read is as fast for SMTP. Only the listeners' sessions use this size
# (ListenerSSLProtocol); outbound TLS in the same process keeps asyncio's default.
TLS_READ_BUFFER = 17 * 1024


class ListenerSSLProtocol(sslproto.SSLProtocol):
    """asyncio's TLS layer with a one-record read buffer, for sessions on our listeners."""

    max_size = TLS_READ_BUFFER


async def _start_tls(
    loop: asyncio.AbstractEventLoop, transport: asyncio.BaseTransport,
    protocol: asyncio.BaseProtocol, context: ssl.SSLContext, timeout: float,
) -> asyncio.BaseTransport:
    """loop.start_tls(server_side=True) with ListenerSSLProtocol on asyncio's own loops.

    uvloop's start_tls uses its compiled TLS layer (a fraction of the CPU per handshake, and
    its own buffer): taken as it is. asyncio's builds a plain SSLProtocol: these are its steps
    (Python 3.11 base_events.start_tls) with the smaller buffer.
    """
    if not isinstance(loop, asyncio.BaseEventLoop):
        return await loop.start_tls(transport, protocol, context, server_side=True,
                                    ssl_handshake_timeout=timeout)
    waiter = loop.create_future()
    tls = ListenerSSLProtocol(loop, protocol, context, waiter, server_side=True,
                              ssl_handshake_timeout=timeout, call_connection_made=False)
    transport.pause_reading()
    transport.set_protocol(tls)
    made = loop.call_soon(tls.connection_made, transport)
    resumed = loop.call_soon(transport.resume_reading)
    try:
        await waiter
    except BaseException:
        transport.close()
        made.cancel()
        resumed.cancel()
        raise
    return tls._app_transport


async def read_data(
    reader: asyncio.StreamReader, buf: bytearray | None, limit: int,
    hold: Callable[[int], bool], release: Callable[[], None], active: Callable[[], None],
) -> tuple[bytearray | None, int, str | None]:
    """Read DATA up to CRLF.CRLF into ``buf``: (buf or None if refused, size, problem);
    with ``buf`` None the message is read to its end and dropped.

    ``limit`` is the size limit (0: none); ``hold(n)`` charges n more bytes to the session's
    memory budget (False: over it), ``release()`` gives them back when ``buf`` is dropped;
    ``active()`` is called whenever bytes arrive (the idle timeout counts them).

    Complete lines already buffered by the reader are taken as one block (found by peeking
    at the StreamReader's buffer, as aiosmtpd itself does for STARTTLS) and checked with
    bytes methods; a line still arriving is read on its own. Either way the message ends
    only at CRLF "." CRLF at a line start, and every line is checked alike: at most 998
    octets, no bare CR or LF, the size limit. Problems: "big", "bare", "long", "busy".
    """
    size = 0
    problem = None
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
                active()
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
                    elif not hold(len(block)):
                        problem, buf = "busy", None
                    else:
                        buf += block
                    if buf is None:
                        release()
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
            release()
            continue
        active()
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
        elif not hold(len(line)):
            problem, buf = "busy", None
        else:
            buf += line
        if buf is None:
            release()
    return buf, size, problem


class WireSMTP(SMTP):
    """aiosmtpd's protocol with our TLS, reply writing and idle timeout, and nothing else.

    A subclass supplies the policy: ``accepted()`` (count the connection, or the 421 reply
    that refuses it) and the command handlers.
    """

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

    def __init__(
        self, *, loop: asyncio.AbstractEventLoop, hostname: str, data_size_limit: int,
        tls_context: ssl.SSLContext | None, implicit_tls: bool, starttls: bool,
        tls_handshake_timeout: float, timeout: float,
    ):
        self.implicit_tls = implicit_tls
        self.server_tls_context = tls_context
        self.tls_handshake_timeout = tls_handshake_timeout
        super().__init__(
            _NO_HOOKS,
            data_size_limit=data_size_limit,
            enable_SMTPUTF8=False,
            decode_data=False,
            hostname=hostname,
            ident="smtpeter ESMTP",
            tls_context=tls_context if starttls else None,
            require_starttls=False,  # the policy layer answers 538/530 with its own codes
            timeout=timeout,
            auth_required=False,  # checked in check_auth_needed, per role
            auth_require_tls=True,
            loop=loop,
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
        self._refused: str | None = None  # the 421 reply that refuses the connection
        self._last_activity = 0.0

    def accepted(self) -> str | None:
        """Called once at TCP accept, peer_ip set: None, or the 421 reply that refuses it."""
        return None

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
            self._refused = self.accepted()
            if self.implicit_tls and not self._refused:
                self._start_implicit_tls(transport)

    def _start_implicit_tls(self, transport: asyncio.BaseTransport) -> None:
        """Put asyncio's TLS layer under the session at once, in connection_made.

        Not loop.start_tls from the session task: uvloop starts reading right after
        connection_made (pause_reading there is ignored), so the ClientHello could reach
        the plain-text reader first. Set up here, every byte goes to the TLS layer.
        """
        self._tls_waiter = self.loop.create_future()
        # A session cancelled while it waits (runsmtp stopping) no longer awaits this future;
        # the TLS layer may still fail it (the client resets): retrieve that here, or asyncio
        # logs "Future exception was never retrieved" with a traceback.
        self._tls_waiter.add_done_callback(_retrieve)
        self._tls_protocol = ListenerSSLProtocol(
            self.loop, self, self.server_tls_context, self._tls_waiter, server_side=True,
            ssl_handshake_timeout=self.tls_handshake_timeout,
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

    def close_connection(self) -> None:
        transport = self._smtp_transport
        if transport is not None and not transport.is_closing():
            transport.close()

    async def _handle_client(self) -> None:
        if self._refused:
            if not self.implicit_tls:  # a TLS client could not read a plain-text reply
                await self.push(self._refused)
            self.close_connection()
            return
        if self.implicit_tls and not await self._tls_handshake("implicit TLS"):
            return
        await super()._handle_client()

    async def start_tls(self) -> bool:
        """STARTTLS after its 220 reply: False (logged, connection closed) if it failed."""
        return await self._tls_handshake("STARTTLS")

    async def _tls_handshake(self, kind: str) -> bool:
        """Put TLS under this session, as aiosmtpd's STARTTLS does, with a handshake timeout.

        False (after one INFO line and a close) when the handshake fails: a client that
        rejects our certificate, a scanner, a TLS version we do not speak, a timeout.
        """
        try:
            if self.implicit_tls:  # the TLS layer is already there (_start_implicit_tls)
                await self._tls_waiter
            else:
                # Plain text pipelined after STARTTLS must not be read as the first encrypted
                # command (RFC 3207 5); cleared before the handshake, since the client's first
                # encrypted command may arrive before this task resumes.
                self._reader._buffer.clear()
                self._original_transport = self.transport
                tls_transport = await _start_tls(
                    self.loop, self.transport, self, self.tls_context,
                    self.tls_handshake_timeout,
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure ends the same way
            log.info("TLS handshake failed (%s) from %s: %s", kind, self.peer_ip,
                     _tls_failure(exc))
            self.close_connection()
            # The TLS layer never made us its protocol, so nobody else tells us the
            # connection is gone (aiosmtpd does the same after a failed STARTTLS).
            self.connection_lost(exc)
            return False
        if self.implicit_tls:
            return True  # asyncio's TLS layer has called connection_made itself
        self._tls_protocol = _TLSInfo(tls_transport)
        # aiosmtpd's connection_made (its STARTTLS half) clears the reader's buffer, which by
        # now may hold the client's first encrypted command: keep it.
        received = bytes(self._reader._buffer)
        self.connection_made(tls_transport)
        self._reader._buffer.extend(received)
        return True

    # -- the idle timeout ---------------------------------------------------------------

    def set_idle_timeout(self, seconds: float) -> None:
        """The idle timeout from the next command on (a greeting or AUTH earns a longer one)."""
        self._timeout_duration = seconds

    def active(self) -> None:
        """Bytes arrived: the idle timeout starts again (aiosmtpd counts only commands)."""
        self._last_activity = self.loop.time()

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

    async def push(self, status: str | bytes) -> None:
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

    async def push_lines(self, lines: list[str]) -> None:
        """A multi-line reply, written at once."""
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

    # -- what the command handlers read and reset -----------------------------------------

    @property
    def is_tls(self) -> bool:
        return bool(self.tls_version)

    async def read_auth_line(self) -> bytes | None:
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

    async def read_data(
        self, buf: bytearray | None, hold: Callable[[int], bool], release: Callable[[], None]
    ) -> tuple[bytearray | None, int, str | None]:
        """read_data() on this session's reader, with its size limit."""
        return await read_data(self._reader, buf, self.data_size_limit, hold, release,
                               self.active)

    def strip_keyword(self, keyword: str, arg: str) -> str | None:
        """``arg`` without its leading ``keyword`` (e.g. "FROM:"), or None if it lacks it."""
        return self._strip_command_keyword(keyword, arg)

    def reset_state(self) -> None:
        """A new, empty envelope (RSET, EHLO, HELO)."""
        self._set_rset_state()

    def end_transaction(self) -> None:
        """A new, empty envelope after DATA."""
        self._set_post_data_state()

    def _set_post_data_state(self) -> None:
        super()._set_post_data_state()
        self.envelope.mail_from = None


def _tls_failure(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason  # e.g. TLSV1_ALERT_UNKNOWN_CA, UNSUPPORTED_PROTOCOL, HTTP_REQUEST
    return printable(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


class _TLSInfo:
    """What aiosmtpd reads from its TLS protocol object (`_extra`, for session.ssl) and tests
    for truth (TLS active), for a TLS layer set up by loop.start_tls."""

    def __init__(self, transport: asyncio.BaseTransport):
        self._extra = {
            key: transport.get_extra_info(key)
            for key in ("ssl_object", "peercert", "cipher", "compression", "sslcontext")
        }


class _NoHooks:
    """aiosmtpd wants a handler object; every hook lives in the session class itself."""

    def __dir__(self):
        return []


_NO_HOOKS = _NoHooks()


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()
