"""A private Postfix (Debian's package) on a loopback port, its own config and queue directories,
for interoperability tests: it takes mail for ``postfix.test`` (STARTTLS offered, DSN,
PIPELINING, 8BITMIME as Postfix offers them), accepts ``root@postfix.test``, refuses unknown
local users with 550 5.1.1, and discards what it accepted. Needs root (Postfix's daemons drop
to the postfix user) and /usr/sbin/postfix; ``require_tool("postfix")`` skips otherwise
(fails under CI=true).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from relay.tls import write_self_signed

from .smtp_helpers import free_port

DOMAIN = "postfix.test"


def master_cf(port: int) -> str:
    """Debian's master.cf for a private instance: smtpd on 127.0.0.1:port, nothing chrooted."""
    lines = []
    for line in Path("/etc/postfix/master.cf").read_text().splitlines():
        fields = line.split()
        if not line or line[0] in "# \t" or len(fields) < 8:
            lines.append(line)
            continue
        if fields[:2] == ["smtp", "inet"]:
            fields[0] = f"127.0.0.1:{port}"
        fields[4] = "n"  # no chroot: the private queue has no copies of /etc files
        lines.append("  ".join(fields))
    return "\n".join(lines) + "\n"


class Postfix:
    def __init__(self) -> None:
        # Under /tmp itself: Postfix's daemons run as the postfix user, and pytest's tmp_path
        # sits below a directory only root may enter.
        self.dir = Path(tempfile.mkdtemp(prefix="smtpeter-postfix-"))
        self.config = self.dir / "etc"
        self.port = 0

    def _main_cf(self) -> str:
        d = self.dir
        return f"""
compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.{DOMAIN}
mydomain = {DOMAIN}
mydestination = {DOMAIN}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_transport = discard:
default_transport = discard:
smtpd_tls_security_level = may
smtpd_tls_cert_file = {d}/cert.pem
smtpd_tls_key_file = {d}/key.pem
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
message_size_limit = 100000
smtpd_client_connection_rate_limit = 0
"""

    def start(self) -> Postfix:
        self.port = free_port()
        for sub in ("etc", "spool", "data"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.dir / "data", "postfix", "postfix")  # as /var/lib/postfix
        write_self_signed(self.dir / "cert.pem", self.dir / "key.pem", [f"mx.{DOMAIN}"])
        (self.config / "main.cf").write_text(self._main_cf())
        (self.config / "master.cf").write_text(master_cf(self.port))
        os.chmod(self.dir, 0o755)
        started = subprocess.run(["postfix", "-c", str(self.config), "start"],
                                 capture_output=True, timeout=60)
        if started.returncode:  # its reason went to syslog or the maillog
            raise RuntimeError(f"postfix start failed:\n{self.log()}")
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"220"):
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"postfix did not start:\n{self.log()}")

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.config), "stop"], capture_output=True,
                       timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        path = self.dir / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_log(self, pattern: str, timeout: float = 10) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log())
            if match:
                return match
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} not in the Postfix log:\n{self.log()[-3000:]}")
