"""The dashboard sign-in throttle: failed sign-ins per account and per client address.

The counter is smtpeter_site.throttle.FailureCounter (SMTP AUTH uses it too), kept in Django's
cache here so that every web process counts the same failures.
"""
from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.core.cache import cache

from smtpeter_site.throttle import FailureCounter

log = logging.getLogger("credentials.signin")
# Without a client address the per-address counter is off: said once, not on every sign-in.
_warned_without_address = False


def _signin_counter() -> FailureCounter:
    # Built per call: the limits are settings, read when used.
    return FailureCounter(settings.SIGNIN_MAX_FAILURES, settings.SIGNIN_FAILURE_WINDOW,
                          store=cache, prefix="signin-fail:")


def _keys(username: str, ip: str | None) -> list[str]:
    # Hashed so that arbitrary user input never becomes a raw cache key.
    account = hashlib.sha256(username.strip().lower().encode()).hexdigest()
    keys = [f"account:{account}"]
    if ip:
        keys.append(f"ip:{ip}")
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
    return _signin_counter().blocked(*_keys(username, ip))


def record_failure(username: str, ip: str | None) -> None:
    counter = _signin_counter()
    for key in _keys(username, ip):
        counter.add(key)


def clear_account(username: str) -> None:
    """Forget an account's failures after a good sign-in; the address keeps its count so one
    valid account cannot be used to reset an address that is guessing others."""
    _signin_counter().clear(_keys(username, None)[0])


def window_minutes() -> int:
    return max(1, round(settings.SIGNIN_FAILURE_WINDOW / 60))
