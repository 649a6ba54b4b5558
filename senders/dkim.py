"""DKIM signing as a pure function: message bytes and key material in, signed bytes out.

dkimpy does the DKIM work: header selection, relaxed header canonicalisation, the folding of
the signature header (as its DKIM.gen_header does). The private-key step is OpenSSL's
(cryptography: RSA 10x faster than dkimpy's pure-Python pow()), and the relaxed body
canonicalisation a faster equivalent of dkimpy's (relaxed_body). Cached per process, for what a
newsletter repeats: parsed private keys, the signed headers' hash per header block, the body
hash per body. It imports no Django, so the render processes (relay.render_pool) run it.
"""
from __future__ import annotations

import base64
import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import dkim
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from dkim.canonicalization import CanonicalizationPolicy, correct_empty_body, strip_trailing_lines

RSA = "rsa-sha256"
ED25519 = "ed25519-sha256"
# Signed, and over-signed (named once more than they occur, so none can be added after us);
# names the message lacks are named once, so none can be added either. RFC 6376 5.4.
SIGNED_HEADERS = (
    "from", "to", "cc", "reply-to", "subject", "date", "message-id", "in-reply-to",
    "references", "mime-version", "content-type", "content-transfer-encoding",
    "content-disposition", "list-unsubscribe", "list-unsubscribe-post", "list-id",
    "sender",
)
_POLICY = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
_DKIM_SIGNATURE = re.compile(rb"^dkim-signature[ \t]*:", re.IGNORECASE)
_BODY_HASHES: OrderedDict[bytes, bytes] = OrderedDict()
_BODY_HASHES_KEEP = 64
_NAME = b"DKIM-Signature"


@dataclass(frozen=True)
class Signer:
    """One signature to add: d=domain, s=selector, with this key (RSA: PEM; Ed25519: the
    32-byte seed, base64, as dkimpy and RFC 8463 take it)."""

    domain: str
    selector: str
    algorithm: str
    private_key: bytes


class SigningError(Exception):
    """The message or the key cannot be signed (the reason is in the text)."""


def split(message: bytes) -> tuple[bytes, bytes]:
    """(header block with its last CRLF, the rest: CRLF + body). Mail here has CRLF line
    ends (the listener refuses bare LF); a message without a body gets an empty one."""
    i = message.find(b"\r\n\r\n")
    if i >= 0:
        return message[:i + 2], message[i + 2:]
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message, b"\r\n"


def strip_signatures(head: bytes) -> bytes:
    """The header block without its DKIM-Signature fields (and their folded lines)."""
    if not re.search(rb"(?im)^dkim-signature[ \t]*:", head):
        return head
    out, skipping = [], False
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and skipping:
            continue
        skipping = bool(_DKIM_SIGNATURE.match(line))
        if not skipping:
            out.append(line)
    return b"".join(out)


def header_list(head: bytes) -> list[bytes]:
    """The h= list for this header block: SIGNED_HEADERS, each once more than it occurs."""
    names = [line.split(b":", 1)[0].strip().lower() for line in head.splitlines()
             if line[:1] not in (b" ", b"\t") and b":" in line]
    counts: dict[bytes, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    out = []
    for name in SIGNED_HEADERS:
        key = name.encode()
        out += [key] * (counts.get(key, 0) + 1)
    return out


@lru_cache(maxsize=32)
def _private(algorithm: str, key: bytes):
    # Parsed once per process and key. RSA goes to OpenSSL (cryptography): dkimpy's own RSA
    # is Python's pow(), 6 ms per signature here against 0.6 ms (bench/README.md).
    try:
        if algorithm == RSA:
            return serialization.load_pem_private_key(key, password=None)
        if algorithm == ED25519:
            return Ed25519PrivateKey.from_private_bytes(base64.b64decode(key, validate=True))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SigningError(f"unreadable {algorithm} key: {exc}") from None
    raise SigningError(f"unknown algorithm {algorithm!r}")


def _signature(algorithm: str, key, digest: bytes) -> bytes:
    if algorithm == RSA:
        return key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    return key.sign(digest)  # RFC 8463: Ed25519 signs the SHA-256 of the header hash input


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 3.4.4, as dkimpy's relaxed body canonicalisation but about 10x faster on a
    rendered newsletter: bytes.find and replace (C) instead of a regex attempt at each of its
    thousands of spaces (tests/senders check they agree). A tab is a WSP run of its own (one
    space); with every run reduced to one space, a WSP at a line's end is a single space."""
    if b"\t" in body:
        body = body.replace(b"\t", b" ")
    body = _one_space(body)
    if b" \r\n" in body:
        body = body.replace(b" \r\n", b"\r\n")
    return correct_empty_body(strip_trailing_lines(body))


def _one_space(body: bytes) -> bytes:
    # A rendered body has few runs of spaces (its HTML is re-serialised): a loop per run.
    i = body.find(b"  ")
    if i < 0:
        return body
    out, start, end = [], 0, len(body)
    while i >= 0:
        j = i + 2
        while j < end and body[j] == 32:
            j += 1
        out.append(body[start:i + 1])
        start = j
        i = body.find(b"  ", j)
    out.append(body[start:])
    return b"".join(out)


def body_hash(body: bytes) -> bytes:
    """base64 SHA-256 of the relaxed-canonical body, cached per body (both algorithms use
    SHA-256, so one hash serves every signature on the message)."""
    key = hashlib.blake2b(body, digest_size=16).digest() + len(body).to_bytes(8, "big")
    found = _BODY_HASHES.get(key)
    if found is None:
        found = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest())
        _BODY_HASHES[key] = found
        while len(_BODY_HASHES) > _BODY_HASHES_KEEP:
            _BODY_HASHES.popitem(last=False)
    return found


@lru_cache(maxsize=64)
def _head(head: bytes) -> tuple[bytes, tuple[bytes, ...], object]:
    """Per header block (a newsletter's is the same for every recipient): the block without
    DKIM-Signatures, the h= list, and SHA-256 fed with the signed headers as dkimpy's
    hash_headers feeds it (relaxed); each signature continues a copy of it."""
    head = strip_signatures(head)
    if not re.search(rb"(?im)^from[ \t]*:", head):
        raise SigningError("no From header")
    include = tuple(header_list(head))
    headers = _POLICY.canonicalize_headers(dkim.rfc822_parse(head + b"\r\n")[0])
    h = hashlib.sha256()
    for name, value in dkim.select_headers(headers, include):
        h.update(name)
        h.update(b":")
        h.update(value)
    return head, include, h


def sign(message: bytes, signers: Sequence[Signer], *, now: int | None = None) -> bytes:
    """The message with one DKIM-Signature per signer on top (relaxed/relaxed), any
    DKIM-Signature it carried removed first (see docs/dkim.md: after rendering it would fail)."""
    if not signers:
        return message
    head, rest = split(message)
    head, include, headers_hash = _head(head)
    message, body = head + rest, rest[2:]
    bh = body_hash(body)
    t = str(int(time.time() if now is None else now)).encode()
    out = []
    for signer in signers:
        key = _private(signer.algorithm, signer.private_key)
        fields = [
            (b"v", b"1"), (b"a", signer.algorithm.encode()), (b"c", b"relaxed/relaxed"),
            (b"d", signer.domain.encode("idna")), (b"s", signer.selector.encode()),
            (b"t", t), (b"h", b" : ".join(include)), (b"bh", bh),
            (b"b", b"0" * 60),  # as dkimpy: b= folds onto lines of its own both times
        ]
        # As dkimpy's DKIM.gen_header: the signature header with b= empty, canonicalised,
        # without its final CRLF, ends the hashed data; OpenSSL does the private-key step.
        value = dkim.fold(b"; ".join(b"=".join(f) for f in fields), namelen=len(_NAME))
        h = headers_hash.copy()
        [(name, canonical)] = _POLICY.canonicalize_headers(
            [(_NAME, b" " + dkim.RE_BTAG.sub(b"\\1", value))])
        h.update(name + b":" + canonical.rstrip())
        fields[-1] = (b"b", base64.b64encode(_signature(signer.algorithm, key, h.digest())))
        value = dkim.fold(b"; ".join(b"=".join(f) for f in fields) + b"\r\n",
                          namelen=len(_NAME))
        out.append(_NAME + b": " + value)
    # The signatures do not cover one another: their order on top does not matter.
    return b"".join(out) + message


_FROM = re.compile(rb"^from[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)", re.IGNORECASE | re.MULTILINE)


def from_domain(message: bytes) -> str:
    """The domain of the (first) From address, lower-case; "" when there is none."""
    import email.utils

    head, _ = split(message[:65536])
    m = _FROM.search(head)
    if m is None:
        return ""
    value = re.sub(r"\r?\n[ \t]", " ", m.group(1).decode("utf-8", "replace"))
    addresses = [a for _, a in email.utils.getaddresses([value]) if "@" in a]
    return addresses[0].rpartition("@")[2].strip().lower().rstrip(">") if addresses else ""
