"""Counting failed dashboard sign-ins per account and per client address, in the cache."""
from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.core.cache import cache

log = logging.getLogger("credentials.signin")
# Without a client address the per-address counter is off: said once, not on every sign-in.
_warned_without_address = False


def _keys(username: str, ip: str | None) -> list[str]:
    # Hashed so that arbitrary user input never becomes a raw cache key.
    account = hashlib.sha256(username.strip().lower().encode()).hexdigest()
    keys = [f"signin-fail:account:{account}"]
    if ip:
        keys.append(f"signin-fail:ip:{ip}")
    return keys


def _warn_once_without_address() -> None:
    global _warned_without_address
    if not _warned_without_address:
        _warned_without_address = True
        log.warning(
            "sign-in throttling: a request has no usable client address (empty REMOTE_ADDR, "
            "e.g. gunicorn on a unix socket): failures are counted per account only, not per "
            "address. Behind a proxy that sets X-Forwarded-For, set TRUST_X_FORWARDED_FOR=true."
            " (Logged once per process.)"
        )


def is_throttled(username: str, ip: str | None) -> bool:
    """True when the account or the address has used up its failures in the window."""
    if ip is None:
        _warn_once_without_address()
    counts = cache.get_many(_keys(username, ip))
    return any(n >= settings.SIGNIN_MAX_FAILURES for n in counts.values())


def record_failure(username: str, ip: str | None) -> None:
    # The window starts at the first failure (fixed window): add() sets the expiry once.
    for key in _keys(username, ip):
        cache.add(key, 0, timeout=settings.SIGNIN_FAILURE_WINDOW)
        try:
            cache.incr(key)
        except ValueError:  # expired between add() and incr()
            cache.set(key, 1, timeout=settings.SIGNIN_FAILURE_WINDOW)


def clear_account(username: str) -> None:
    """Forget an account's failures after a good sign-in; the address keeps its count so one
    valid account cannot be used to reset an address that is guessing others."""
    cache.delete(_keys(username, None)[0])


def window_minutes() -> int:
    return max(1, round(settings.SIGNIN_FAILURE_WINDOW / 60))
