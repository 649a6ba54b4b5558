"""Keys derived from SECRET_KEY, one per purpose, for code that runs under Django settings.

Every key the project derives goes through features.tokens.derive_key (HMAC-SHA256 with a
label per purpose), so that no two purposes ever share a key and there is one way to do it.
"""
from __future__ import annotations

from functools import lru_cache

from django.conf import settings

from features.tokens import derive_key

# The purposes in use: "tracking" (click and open tokens), "verp" (bounce addresses),
# "smtp-auth-cache" (relay.smtp_auth's keyed hash of verified credentials).


@lru_cache(maxsize=16)
def _derived(secret_key: str, purpose: str) -> bytes:
    return derive_key(secret_key, purpose)


def key_for(purpose: str) -> bytes:
    """The key for ``purpose`` under the current SECRET_KEY (a changed setting, as tests do,
    gives a new key)."""
    return _derived(settings.SECRET_KEY, purpose)
