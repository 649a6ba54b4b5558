"""A scriptable SMTP sink for tests (aiosmtpd in a thread, 127.0.0.1, a free port).

What a recipient (or the sender at MAIL: reject, tempfail) gets is chosen by its local part
(the text before the first "-", "+" or "@"), or by ``sink.script[address]`` (a reply line, or
DROP):

    ok, anything else   250 at RCPT, and the DATA reply of the transaction
    tempfail            451 4.2.0 at RCPT          reject   550 5.1.1 at RCPT
    drop                connection closed at RCPT  slowN    250 at RCPT after N seconds
    data451 / data550   250 at RCPT; the DATA reply is 451 / 550 for the whole transaction
    datadrop            connection closed after the data, before any reply
    dataslowN           the DATA reply comes after N seconds

Options choose what EHLO offers: STARTTLS (with a certificate; ``starttls_fail`` "refuse"
answers 454, "handshake" closes the connection after 220), implicit TLS, DSN, PIPELINING,
SIZE, 8BITMIME, AUTH PLAIN LOGIN (after TLS, ``auth`` = {user: password}). ``greeting``
replaces the 220 line.

The sink records every command line as it came (``lines``), the raw bytes of each
connection after TLS (``raw``: dot-stuffing and line ends as sent; ``most_open``: the most
connections it had open at once), and each transaction
(``received``: the exact MAIL and RCPT lines, the accepted recipients, the data as
aiosmtpd reassembled it, whether it came over TLS and after AUTH).
"""
from __future__ import annotations

import asyncio
import collections
import re
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult

from relay.tls import write_self_signed

from .smtp_helpers import free_port

DROP = "DROP"
_DSN_MAIL = {"RET", "ENVID"}
_DSN_RCPT = {"NOTIFY", "ORCPT"}
_SLOW = re.compile(r"(data)?slow(\d+(?:\.\d+)?)\Z")


@dataclass
class Transaction:
    mail_line: str
    rcpt_lines: list[str]
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    authenticated: str


@dataclass
class SinkOptions:
    starttls: bool = False
    starttls_fail: str = ""  # "", "refuse", "handshake"
    implicit_tls: bool = False
    dsn: bool = False
    pipelining: bool = True
    size: int = 0  # 0: SIZE not offered
    eightbitmime: bool = True
    auth: dict[str, str] = field(default_factory=dict)
    greeting: str = ""


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (also its own CA file)."""
    cert, key = directory / "sink-cert.pem", directory / "sink-key.pem"
    if not cert.exists():
        write_self_signed(cert, key, ["localhost", "127.0.0.1"])
    return cert, key


class _SinkSMTP(SMTP):
    def __init__(self, handler, sink: Sink, **kwargs):
        super().__init__(handler, **kwargs)
        self.sink = sink
        self.opts = sink.options
        self.raw = bytearray()
        self.user = ""
        # DSN parameters make lines longer than aiosmtpd's 512 (RFC 3461 4: +100 / +500).
        self.command_size_limits = collections.defaultdict(
            lambda: 512, {"MAIL": 1000, "RCPT": 1000})

    def connection_made(self, transport):
        if self._original_transport is None:
            self.sink.raw.append(self.raw)
            self.sink.open.add(id(self))
            self.sink.most_open = max(self.sink.most_open, len(self.sink.open))
        super().connection_made(transport)

    def connection_lost(self, exc):
        self.sink.open.discard(id(self))
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.raw.extend(data)
        super().data_received(data)

    @property
    def tls(self) -> bool:
        return self.transport is not None and (
            self._tls_protocol is not None or self.transport.get_extra_info("ssl_object")
            is not None)

    async def _handle_client(self):
        if self.opts.greeting:
            await self.push(self.opts.greeting)
            self.transport.close()
            return
        await super()._handle_client()

    def _record(self, command: str, arg: str | None) -> None:
        self.sink.lines.append(f"{command} {arg}" if arg else command)

    async def smtp_EHLO(self, hostname):
        self._record("EHLO", hostname)
        if not hostname:
            await self.push("501 Syntax: EHLO hostname")
            return
        self._set_rset_state()
        self.session.extended_smtp = True
        self.session.host_name = hostname
        lines = [self.hostname, "ENHANCEDSTATUSCODES"]
        if self.opts.pipelining:
            lines.append("PIPELINING")
        if self.opts.size:
            lines.append(f"SIZE {self.opts.size}")
        if self.opts.eightbitmime:
            lines.append("8BITMIME")
        if self.opts.dsn:
            lines.append("DSN")
        if self.opts.starttls and not self.tls:
            lines.append("STARTTLS")
        if self.opts.auth and self.tls:
            lines.append("AUTH PLAIN LOGIN")
        for line in lines[:-1]:
            await self.push(f"250-{line}")
        await self.push(f"250 {lines[-1]}")

    async def smtp_HELO(self, hostname):
        self._record("HELO", hostname)
        await super().smtp_HELO(hostname)

    async def smtp_STARTTLS(self, arg):
        self._record("STARTTLS", arg)
        if self.opts.starttls_fail == "refuse":
            await self.push("454 4.7.0 TLS not available now")
            return
        if self.opts.starttls_fail == "handshake":
            await self.push("220 2.0.0 Ready to start TLS")
            self.transport.close()
            return
        await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg):
        self._record("AUTH", arg.split()[0] if arg else arg)  # never the secret
        await super().smtp_AUTH(arg)

    async def smtp_RSET(self, arg):
        self._record("RSET", arg)
        await super().smtp_RSET(arg)

    async def smtp_QUIT(self, arg):
        self._record("QUIT", arg)
        await super().smtp_QUIT(arg)

    async def smtp_NOOP(self, arg):
        self._record("NOOP", arg)
        await super().smtp_NOOP(arg)

    async def smtp_DATA(self, arg):
        self._record("DATA", arg)
        await super().smtp_DATA(arg)

    def _params(self, rest: str) -> dict[str, str]:
        params = {}
        for word in rest.split():
            key, _, value = word.partition("=")
            params[key.upper()] = value
        return params

    async def smtp_MAIL(self, arg):
        line = f"MAIL {arg}"
        self._record("MAIL", arg)
        if await self.check_helo_needed():
            return
        if self.envelope.mail_from is not None:
            await self.push("503 5.5.1 Error: nested MAIL command")
            return
        match = re.match(r"FROM:<([^<>]*)>(.*)\Z", arg or "", re.I)
        if not match:
            await self.push("501 5.5.4 Syntax: MAIL FROM:<address>")
            return
        params = self._params(match.group(2))
        allowed = {"SIZE"} if self.opts.size else set()
        allowed |= {"BODY"} if self.opts.eightbitmime else set()
        allowed |= _DSN_MAIL if self.opts.dsn else set()
        if set(params) - allowed:
            await self.push("555 5.5.4 Unsupported option: "
                            + ",".join(sorted(set(params) - allowed)))
            return
        if self.opts.size and params.get("SIZE", "0").isdigit() and int(
                params.get("SIZE", "0")) > self.opts.size:
            await self.push("552 5.3.4 Message size exceeds fixed maximum message size")
            return
        # Were the RCPT and DATA lines already here when MAIL was read (RFC 2920 pipelining)?
        self.sink.pipelined.append(b"RCPT" in bytes(self._reader._buffer).upper())
        sender = self.sink.behaviour(match.group(1)) if match.group(1) else ""
        if sender in ("reject", "tempfail"):
            await self.push("550 5.7.1 Sender refused" if sender == "reject"
                            else "451 4.7.1 Sender greylisted, try later")
            return
        self.envelope.mail_from = match.group(1)
        self.envelope.mail_options = [line]
        self.envelope.rcpt_options = []
        await self.push("250 2.1.0 Sender OK")

    async def smtp_RCPT(self, arg):
        self._record("RCPT", arg)
        if await self.check_helo_needed():
            return
        if self.envelope.mail_from is None:
            await self.push("503 5.5.1 Error: need MAIL command")
            return
        match = re.match(r"TO:<([^<>]+)>(.*)\Z", arg or "", re.I)
        if not match:
            await self.push("501 5.5.4 Syntax: RCPT TO:<address>")
            return
        address, params = match.group(1), self._params(match.group(2))
        if set(params) - (_DSN_RCPT if self.opts.dsn else set()):
            await self.push("555 5.5.4 Unsupported option")
            return
        self.envelope.rcpt_options.append(f"RCPT {arg}")
        behaviour = self.sink.behaviour(address)
        slow = _SLOW.match(behaviour)
        if slow and not slow.group(1):
            await asyncio.sleep(float(slow.group(2)))
        if behaviour == DROP or behaviour == "drop":
            self.transport.close()
            return
        if behaviour in ("tempfail", "451"):
            await self.push("451 4.2.0 Mailbox busy, try later")
            return
        if behaviour in ("reject", "550"):
            await self.push("550 5.1.1 No such user here")
            return
        if behaviour[:1] in "245" and behaviour[1:3].isdigit():
            await self.push(behaviour)
            return
        self.envelope.rcpt_tos.append(address)
        await self.push("250 2.1.5 Recipient OK")


class _Handler:
    def __init__(self, sink: Sink):
        self.sink = sink

    async def handle_DATA(self, server: _SinkSMTP, session, envelope):
        sink = self.sink
        sink.received.append(Transaction(
            mail_line=envelope.mail_options[0], rcpt_lines=list(envelope.rcpt_options),
            rcpt_tos=list(envelope.rcpt_tos), data=bytes(envelope.original_content),
            tls=server.tls, authenticated=server.user,
        ))
        behaviours = [sink.behaviour(a) for a in envelope.rcpt_tos]
        for behaviour in behaviours:
            slow = _SLOW.match(behaviour)
            if slow and slow.group(1):
                await asyncio.sleep(float(slow.group(2)))
        if "datadrop" in behaviours:
            server.transport.close()
            return "250 never sent"
        if "data451" in behaviours:
            return "451 4.3.0 Could not store the message"
        if "data550" in behaviours:
            return "550 5.7.1 Message refused as spam"
        return f"250 2.0.0 Ok: queued as Q{len(sink.received)}"


def _authenticator(sink: Sink):
    def check(server, session, envelope, mechanism, auth_data):
        user = auth_data.login.decode()
        ok = sink.options.auth.get(user) == auth_data.password.decode()
        if ok:
            server.user = user
        return AuthResult(success=ok, handled=False)
    return check


class _Controller(Controller):
    def __init__(self, sink: Sink, **kwargs):
        self.sink = sink
        super().__init__(_Handler(sink), **kwargs)

    def factory(self):
        return _SinkSMTP(self.handler, self.sink, **self.SMTP_kwargs)


class Sink:
    """The sink on ``host``:``port`` (127.0.0.1 unless told); ``with Sink(...) as sink:``
    starts and stops it."""

    def __init__(self, options: SinkOptions | None = None, cert_dir: Path | None = None,
                 host: str = "127.0.0.1", **kwargs) -> None:
        self.host = host  # another loopback address (127.0.0.3) for a second MX on one port
        self.options = options or SinkOptions(**kwargs)
        self.script: dict[str, str] = {}
        self.lines: list[str] = []
        self.raw: list[bytearray] = []
        self.received: list[Transaction] = []
        self.pipelined: list[bool] = []  # per MAIL
        self.open: set[int] = set()  # connections open now
        self.most_open = 0  # the most connections open at once
        self.cert_dir = cert_dir
        self.port = 0
        self.cert: Path | None = None
        self._controller: _Controller | None = None
        self._lock = threading.Lock()

    def behaviour(self, address: str) -> str:
        if address in self.script:
            return self.script[address]
        local = address.partition("@")[0]
        return local.partition("-")[0].partition("+")[0].lower()

    @property
    def connections(self) -> int:
        return len(self.raw)

    def _server_context(self) -> ssl.SSLContext | None:
        opts = self.options
        if not (opts.starttls or opts.implicit_tls):
            return None
        if self.cert_dir is None:
            raise ValueError("a TLS sink needs cert_dir")
        self.cert, key = make_cert(self.cert_dir)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, key)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts this sink's certificate."""
        ctx = ssl.create_default_context(cafile=str(self.cert))
        return ctx

    def start(self) -> Sink:
        return self.start_on(0)

    def start_on(self, port: int) -> Sink:
        """Start on ``port`` (0: a free one)."""
        ctx = self._server_context()
        opts = self.options
        kwargs = dict(
            hostname=self.host, server_hostname="sink.test", ident="sink", decode_data=False,
            enable_SMTPUTF8=False,
            data_size_limit=opts.size or None,
            auth_require_tls=False, auth_exclude_mechanism=["CRAM-MD5"],
            authenticator=_authenticator(self),
            tls_context=ctx if opts.starttls else None,
            ssl_context=ctx if opts.implicit_tls else None,
        )
        for _ in range(10):
            self.port = port or free_port()
            self._controller = _Controller(self, port=self.port, **kwargs)
            try:
                self._controller.start()
            except (OSError, RuntimeError):
                continue
            # Forget the controller's own readiness probe.
            del self.raw[:], self.lines[:], self.pipelined[:]
            self.open.clear()
            self.most_open = 0
            return self
        raise RuntimeError("the sink could not start")

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
