"""DKIM key pairs: generation, the DNS TXT value of the public half, and the encryption of the
private half at rest (AES-256-GCM, cryptography).

The encryption key is derived from SENDER_KEY_SECRET when set, else from SECRET_KEY (purpose
"dkim-keys", smtpeter_site.keys); the domain and selector are the associated data, so a
ciphertext copied to another key row does not decrypt.
"""
from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

from features.tokens import derive_key
from smtpeter_site.keys import key_for

from .dkim import ED25519, RSA

RSA_BITS = 2048
_VERSION = b"\x01"


class KeyUnreadable(Exception):
    """A stored private key does not decrypt (SECRET_KEY or SENDER_KEY_SECRET changed)."""


def generate(algorithm: str) -> tuple[bytes, str]:
    """(private key as dkim.Signer takes it, public p= value) for a new key pair."""
    if algorithm == RSA:
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        private = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        return private, base64.b64encode(public).decode()
    if algorithm == ED25519:
        key = ed25519.Ed25519PrivateKey.generate()
        seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
        return base64.b64encode(seed), base64.b64encode(public).decode()
    raise ValueError(f"unknown algorithm {algorithm!r}")


def public_of(private_pem: bytes) -> str:
    """The p= value of an RSA private key in PEM."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(public).decode()


def txt_value(algorithm: str, public: str) -> str:
    """The DKIM TXT record's text (RFC 6376 3.6.1; k=ed25519 from RFC 8463)."""
    k = "ed25519" if algorithm == ED25519 else "rsa"
    return f"v=DKIM1; k={k}; p={public}"


def _aead() -> AESGCM:
    secret = settings.SENDER_KEY_SECRET
    return AESGCM(derive_key(secret, "dkim-keys") if secret else key_for("dkim-keys"))


def seal(private: bytes, domain: str, selector: str) -> bytes:
    nonce = os.urandom(12)
    return _VERSION + nonce + _aead().encrypt(nonce, private, f"{domain}/{selector}".encode())


def unseal(sealed: bytes, domain: str, selector: str) -> bytes:
    sealed = bytes(sealed)
    if sealed[:1] != _VERSION:
        raise KeyUnreadable("unknown format")
    try:
        return _aead().decrypt(sealed[1:13], sealed[13:], f"{domain}/{selector}".encode())
    except InvalidTag:
        raise KeyUnreadable("does not decrypt under the current key secret") from None
