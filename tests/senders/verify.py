"""Two DKIM verifiers for the tests, both asking the test DNS server for keys: dkimpy's, and
Perl's Mail::DKIM (Debian libmail-dkim-perl) run as a separate program.

OpenDKIM's opendkim-testmsg would be the obvious Debian verifier, but it asks the system
resolver only (no server or port option), so it cannot see keys in a DNS server started by
the tests; Mail::DKIM takes a Net::DNS resolver pointed at it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import dkim
import dns.resolver
import pytest

from relay.mx import parse_nameservers

PERL_VERIFIER = Path(__file__).with_name("dkimverify.pl")


def dnsfunc_for(nameserver: str):
    """dkimpy's dnsfunc, sending its TXT queries to the test DNS server."""
    (ip, port), = parse_nameservers(nameserver)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [ip]
    resolver.port = port
    resolver.lifetime = 5

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode().rstrip("."), "TXT", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(b"".join(r.strings) for r in answer)
    return dnsfunc


def dkimpy_results(message: bytes, nameserver: str) -> list[tuple[str, bool]]:
    """(d=, passes) per DKIM-Signature, by dkimpy."""
    d = dkim.DKIM(message)
    count = sum(1 for name, _ in d.headers if name.lower() == b"dkim-signature")
    out = []
    for i in range(count):
        try:
            ok = d.verify(i, dnsfunc=dnsfunc_for(nameserver))
        except dkim.DKIMException:  # dkimpy raises for some failures, returns False for others
            ok = False
        out.append((d.domain.decode(), bool(ok)))
    return out


def perl_available() -> bool:
    if shutil.which("perl") is None:
        return False
    return subprocess.run(["perl", "-MMail::DKIM::Verifier", "-MNet::DNS", "-e", "1"],
                          capture_output=True).returncode == 0


def perl_results(message: bytes, nameserver: str) -> tuple[str, list[list[str]]]:
    """(overall result, [domain, selector, algorithm, result] per signature) by Mail::DKIM."""
    if not perl_available():
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and Mail::DKIM (libmail-dkim-perl) is missing")
        pytest.skip("Mail::DKIM (libmail-dkim-perl) is missing: scripts/ensure-test-tools.sh")
    (ip, port), = parse_nameservers(nameserver)
    done = subprocess.run(["perl", str(PERL_VERIFIER), ip, str(port)], input=message,
                          capture_output=True, timeout=30, check=True)
    lines = done.stdout.decode().splitlines()
    overall = lines[-1].split(" ", 1)[1]
    return overall, [line.split() for line in lines[:-1]]
