"""Sender-domain test helpers: DKIM keys published in a test DNS server."""
from __future__ import annotations

import pytest

from senders import keys
from senders.dkim import ED25519, RSA, Signer
from tests.relay.dnsserver import DNSServer


def txt(text: str) -> list[str]:
    """One TXT record as DNS carries it: strings of at most 255 octets."""
    return [text[i:i + 255] for i in range(0, len(text), 255)]


def new_signer(domain: str, selector: str, algorithm: str = RSA) -> tuple[Signer, str]:
    """A signer with a fresh key, and the TXT value that publishes its public half."""
    private, public = keys.generate(algorithm)
    return Signer(domain, selector, algorithm, private), keys.txt_value(algorithm, public)


@pytest.fixture(scope="module")
def dns_server():
    with DNSServer({}) as server:
        yield server


@pytest.fixture(scope="module")
def published(dns_server):
    """An RSA and an Ed25519 signer of example.com, both published."""
    rsa, rsa_txt = new_signer("example.com", "r1", RSA)
    ed, ed_txt = new_signer("example.com", "e1", ED25519)
    dns_server.set("r1._domainkey.example.com", {"TXT": [txt(rsa_txt)]})
    dns_server.set("e1._domainkey.example.com", {"TXT": [txt(ed_txt)]})
    return rsa, ed
