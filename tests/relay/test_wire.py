"""relay/wire.py: it loads only with the aiosmtpd version it was written for, and its smaller
TLS read buffer is the listeners' own, not the process's (outbound TLS keeps asyncio's)."""
import asyncio
import re
import ssl
import subprocess
import sys
from asyncio import sslproto
from pathlib import Path

import aiosmtpd
import pytest

from relay import tls, wire

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_aiosmtpd_is_the_pinned_one():
    pinned = re.search(r'"aiosmtpd==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pinned and pinned.group(1) == wire.AIOSMTPD_VERSION
    assert aiosmtpd.__version__ == wire.AIOSMTPD_VERSION, (
        f"aiosmtpd {aiosmtpd.__version__} installed; relay/wire.py is written for "
        f"{wire.AIOSMTPD_VERSION}"
    )


def test_another_aiosmtpd_version_is_refused_with_a_clear_message():
    with pytest.raises(RuntimeError, match=r"aiosmtpd 1\.5\.0 is installed.*relay/wire\.py"):
        wire.check_aiosmtpd_version("1.5.0")
    wire.check_aiosmtpd_version(wire.AIOSMTPD_VERSION)


def test_relay_wire_does_not_load_with_another_aiosmtpd():
    code = "import aiosmtpd; aiosmtpd.__version__ = '1.5.0'; import relay.wire"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode != 0
    assert "RuntimeError: aiosmtpd 1.5.0 is installed, but relay/wire.py overrides" in (
        run.stderr)


class _Echo(asyncio.Protocol):
    """Echoes; what arrives before connection_made (start_tls calls it late) waits."""

    def __init__(self):
        self.transport = None
        self.early = b""

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.early)

    def data_received(self, data):
        if self.transport is None:
            self.early += data
        else:
            self.transport.write(data)


async def _listener_and_outbound_tls(cert: Path, key: Path):
    """A listener that starts TLS as STARTTLS does (wire._start_tls, asyncio's loop) and an
    outbound TLS connection to it from the same process: both sides' TLS protocols."""
    loop = asyncio.get_running_loop()
    server_ctx = tls.server_context(str(cert), str(key))
    upgraded: asyncio.Future = loop.create_future()

    class Plain(asyncio.Protocol):
        def connection_made(self, transport):
            async def upgrade():
                echo = _Echo()
                tls_transport = await wire._start_tls(loop, transport, echo, server_ctx, 5)
                echo.connection_made(tls_transport)
                upgraded.set_result(tls_transport)
            loop.create_task(upgrade())

    server = await loop.create_server(Plain, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client_ctx = ssl.create_default_context(cafile=str(cert))
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                   server_hostname="localhost")
    writer.write(b"ping\r\n")
    assert await asyncio.wait_for(reader.readline(), 5) == b"ping\r\n"
    server_side = (await upgraded)._ssl_protocol
    client_side = writer.transport._ssl_protocol
    writer.close()
    server.close()
    return server_side, client_side


def test_the_small_tls_buffer_is_for_listeners_only(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    tls.write_self_signed(cert, key, ["localhost"])
    server_side, client_side = asyncio.run(_listener_and_outbound_tls(cert, key))
    assert isinstance(server_side, wire.ListenerSSLProtocol)
    assert len(server_side._ssl_buffer) == wire.TLS_READ_BUFFER == 17 * 1024
    # asyncio's own default (256 KiB on Python 3.11) stays for outbound TLS, e.g. delivery.
    assert sslproto.SSLProtocol.max_size > wire.TLS_READ_BUFFER
    assert len(client_side._ssl_buffer) == sslproto.SSLProtocol.max_size
