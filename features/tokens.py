"""Signed tracking tokens and VERP bounce addresses: HMAC-SHA256, truncated, constant-time checked.

A token names (message id, recipient id, link index); the URL it stands for is re-derived from
the stored message (see features/services.py), so tracking URLs stay short. A 32-bit check of
the URL rides along, so a link list that re-derives differently (after an upgrade, say) gives
404 rather than a redirect to the wrong link. The check is keyed BLAKE2s: the HMAC over the
token already binds it to its index, and a keyed check reveals nothing of the URL to someone
who holds only the tracking link (an unkeyed CRC-32 would let them test guesses offline).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from functools import lru_cache

TOKEN_MAC_BYTES = 8  # 64 bits over everything else in the token, checked before any DB work
URL_CHECK_BYTES = 4  # keyed BLAKE2s of the URL: guards the re-derived link list
_TOKEN_TAIL = URL_CHECK_BYTES + TOKEN_MAC_BYTES
VERP_MAC_BYTES = 8  # 64 bits keeps the local part short; bounces are not a redirect target
VERP_PREFIX = "b"
CLICK = b"c"
OPEN = b"o"
_MAX_VARINT = 10  # bytes of a 64-bit unsigned varint
_URLSAFE = bytes.maketrans(b"+/", b"-_")
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def derive_key(secret_key: str | bytes, purpose: str) -> bytes:
    """A key for one purpose ("tracking", "verp", ...), derived from SECRET_KEY so that no two
    purposes share one (smtpeter_site.keys.key_for gives it for the current settings)."""
    secret = secret_key.encode() if isinstance(secret_key, str) else secret_key
    return hmac.digest(secret, b"smtpeter.features." + purpose.encode(), "sha256")


def _varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("ids are non-negative")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varints(data: bytes) -> list[int] | None:
    """All varints in data, or None when data is not exactly a sequence of minimal varints."""
    values: list[int] = []
    value = shift = length = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        shift += 7
        length += 1
        if length > _MAX_VARINT:
            return None
        if not byte & 0x80:
            if byte == 0 and length > 1:  # non-minimal encoding: one value, one spelling
                return None
            values.append(value)
            value = shift = length = 0
    return None if length else values


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@lru_cache(maxsize=8)
def _check_hash(key: bytes):
    # BLAKE2s in keyed mode is a MAC on its own, under a subkey of its own (the tracking key
    # itself signs the tokens with HMAC-SHA256). Callers copy it, never update it.
    subkey = hmac.digest(key, b"smtpeter.features.urlcheck", "sha256")
    return hashlib.blake2s(key=subkey, digest_size=URL_CHECK_BYTES, person=b"urlcheck")


def url_check(key: bytes, url: str) -> bytes:
    """The bytes a token carries to prove which URL its index stood for when it was made."""
    return url_checks(key, [url])[0]


def url_checks(key: bytes, urls: list[str]) -> list[bytes]:
    """[url_check(key, url) for url in urls], with the keyed state set up once."""
    base = _check_hash(key)
    out = []
    for url in urls:
        h = base.copy()
        h.update(url.encode("utf-8", "surrogatepass"))
        out.append(h.digest())
    return out


def url_matches(key: bytes, url: str, check: bytes) -> bool:
    return hmac.compare_digest(url_check(key, url), check)


def _hmac_states(key: bytes, prefix: bytes):
    # HMAC-SHA256 by its definition (RFC 2104), inner state already fed with prefix.
    block = hashlib.sha256(key).digest() if len(key) > 64 else key
    block = block.ljust(64, b"\0")
    return (hashlib.sha256(block.translate(_IPAD) + prefix),
            hashlib.sha256(block.translate(_OPAD)))


def make_token(key: bytes, kind: bytes, message_id: int, recipient_id: int, index: int,
               url: str = "") -> str:
    """URL-safe token for one link (kind CLICK) or image (kind OPEN; index 0 is the pixel)."""
    payload = _varint(message_id) + _varint(recipient_id) + _varint(index)
    payload += url_check(key, url)
    mac = hmac.digest(key, kind + payload, "sha256")[:TOKEN_MAC_BYTES]
    return _b64(payload + mac)


def tokens(key: bytes, kind: bytes, message_id: int, recipient_id: int,
           checks: list[bytes]) -> list[bytes]:
    """make_token() for every index of a message's links (or images), as ASCII bytes.

    checks[i] is the URL check of index i. HMAC-SHA256 by its definition (RFC 2104) with the
    inner and outer hash states prepared once: per token two SHA-256 state copies, half of
    what hmac.HMAC.copy() costs, and no Python call but the hashing.
    """
    prefix = _varint(message_id) + _varint(recipient_id)
    inner, outer = _hmac_states(key, kind + prefix)
    b2a = binascii.b2a_base64
    out = []
    for index, check in enumerate(checks):
        tail = (bytes((index,)) if index < 0x80 else _varint(index)) + check
        h = inner.copy()
        h.update(tail)
        o = outer.copy()
        o.update(h.digest())
        raw = prefix + tail + o.digest()[:TOKEN_MAC_BYTES]
        out.append(b2a(raw, newline=False).translate(_URLSAFE).rstrip(b"="))
    return out


def max_token_length(index: int = 2**20, max_id: int = 2**42) -> int:
    """Longest token for a link index when message and recipient ids stay below max_id."""
    return len(_b64(_varint(max_id) * 2 + _varint(index) + b"\0" * _TOKEN_TAIL))


def read_token(key: bytes, kind: bytes, token: str) -> tuple[int, int, int, bytes] | None:
    """(message id, recipient id, index, URL check) of a genuine token, None for anything else.

    The caller still compares the URL check with url_matches() once it knows the URL.
    """
    if not isinstance(token, str) or not 20 <= len(token) <= 80 or not token.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if _b64(raw) != token:  # one spelling per token: no padding games, no stray bits
        return None
    payload, mac = raw[:-TOKEN_MAC_BYTES], raw[-TOKEN_MAC_BYTES:]
    expected = hmac.digest(key, kind + payload, "sha256")[:TOKEN_MAC_BYTES]
    if not hmac.compare_digest(mac, expected):
        return None
    values = _read_varints(payload[:-URL_CHECK_BYTES])
    if values is None or len(values) != 3:
        return None
    return values[0], values[1], values[2], payload[-URL_CHECK_BYTES:]


def _b32(data: bytes) -> str:
    return base64.b32encode(data).rstrip(b"=").decode("ascii").lower()


def verp_address(key: bytes, message_id: int, recipient_id: int, domain: str) -> str:
    """Envelope sender that brings this recipient's bounces back to us: b<base32>@domain."""
    payload = _varint(message_id) + _varint(recipient_id)
    mac = hmac.digest(key, b"verp" + payload, "sha256")[:VERP_MAC_BYTES]
    return f"{VERP_PREFIX}{_b32(payload + mac)}@{domain}"


def parse_verp(key: bytes, address: str, domain: str | None = None) -> tuple[int, int] | None:
    """(message id, recipient id) named by a genuine VERP address, None if forged or malformed.

    The local part is matched in any case (mail systems may fold it); domain, when given, must
    match too.
    """
    if not isinstance(address, str) or address.count("@") != 1 or len(address) > 320:
        return None
    local, _, dom = address.strip().strip("<>").rpartition("@")
    if domain is not None and dom.lower().rstrip(".") != domain.lower().rstrip("."):
        return None
    local = local.lower()
    if not local.startswith(VERP_PREFIX) or len(local) > 64:
        return None
    body = local[len(VERP_PREFIX):].upper()
    if not body or not body.isalnum() or not body.isascii():
        return None
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except (binascii.Error, ValueError):
        return None
    if _b32(raw).upper() != body or len(raw) <= VERP_MAC_BYTES:
        return None
    payload, mac = raw[:-VERP_MAC_BYTES], raw[-VERP_MAC_BYTES:]
    expected = hmac.digest(key, b"verp" + payload, "sha256")[:VERP_MAC_BYTES]
    if not hmac.compare_digest(mac, expected):
        return None
    values = _read_varints(payload)
    if values is None or len(values) != 2:
        return None
    return values[0], values[1]
