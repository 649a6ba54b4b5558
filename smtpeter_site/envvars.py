"""Typed environment variables for settings.py: a bad value stops startup with its name.

django-environ's int() and float() fail with a bare ValueError that names no variable, and its
bool() reads any unknown word ("ture") as false. These raise ImproperlyConfigured instead,
saying which variable holds what and what was expected. An empty value is the default, except
for port lists, where it means no ports.
"""
from __future__ import annotations

from collections.abc import Iterable

import environ
from django.core.exceptions import ImproperlyConfigured

_TRUE = {"true", "on", "ok", "y", "yes", "1"}
_FALSE = {"false", "off", "no", "n", "0"}
_UNSET = object()


def _bad(name: str, raw: str, expected: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{name}={raw!r} is not valid: expected {expected}")


def _raw(env: environ.Env, name: str) -> str | None:
    # env.str, not os.environ: it keeps django-environ's $VAR references working. A sentinel
    # default, because with default=None it turns "" into None ("" is a list of no ports).
    value = env.str(name, default=_UNSET)
    return None if value is _UNSET else str(value)


def _scalar(env: environ.Env, name: str) -> str | None:
    # An empty scalar ("NAME=" in .env) means the default, as if it were not set.
    raw = _raw(env, name)
    return None if raw is None or not raw.strip() else raw


def env_bool(env: environ.Env, name: str, default: bool) -> bool:
    raw = _scalar(env, name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise _bad(name, raw, "true or false")


def env_int(env: environ.Env, name: str, default: int, minimum: int | None = None) -> int:
    raw = _scalar(env, name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise _bad(name, raw, "a whole number") from None
    if minimum is not None and value < minimum:
        raise _bad(name, raw, f"a whole number of at least {minimum}")
    return value


def env_float(env: environ.Env, name: str, default: float, minimum: float = 0,
              positive: bool = False) -> float:
    """A finite number of at least ``minimum``; above 0 too when ``positive`` (a timeout)."""
    raw = _scalar(env, name)
    if raw is None:
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise _bad(name, raw, "a number") from None
    if positive and not value > 0:
        raise _bad(name, raw, "a finite number above 0")
    if not minimum <= value < float("inf"):
        raise _bad(name, raw, f"a finite number of at least {minimum:g}")
    return value


def env_ports(env: environ.Env, name: str, default: list[int]) -> list[int]:
    """A comma-separated list of TCP ports; empty means none."""
    raw = _raw(env, name)
    if raw is None:
        return list(default)
    ports = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        if not (item.isascii() and item.isdigit() and 1 <= int(item) <= 65535):
            raise _bad(name, raw, "comma-separated port numbers from 1 to 65535")
        ports.append(int(item))
    return ports


def env_choice(env: environ.Env, name: str, default: str, choices: Iterable[str],
               fold_case: bool = False) -> str:
    raw = _scalar(env, name)
    if raw is None:
        return default
    value = raw.strip().upper() if fold_case else raw.strip()
    choices = list(choices)
    if value not in choices:
        raise _bad(name, raw, "one of " + ", ".join(choices))
    return value


def env_url(env: environ.Env, name: str, default: str, trailing_slash: bool = False) -> str:
    """An absolute http(s) URL in ASCII (IDN hosts as punycode), as links in mail need it."""
    from urllib.parse import urlsplit

    raw = _scalar(env, name)
    value = default if raw is None else raw.strip()
    parts = urlsplit(value)
    if (parts.scheme not in ("http", "https") or not parts.hostname or not value.isascii()
            or any(c.isspace() or ord(c) < 0x20 for c in value) or parts.fragment):
        raise _bad(name, value, "an absolute http:// or https:// URL in ASCII (punycode for "
                   "international host names), without spaces or #fragment")
    if trailing_slash:  # a prefix that paths are appended to: no ?query either
        if parts.query or value.endswith("?"):
            raise _bad(name, value, "an http(s) URL prefix without a ?query")
        return value.rstrip("/") + "/"
    return value.rstrip("/")
