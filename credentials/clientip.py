"""The client address of a request, as recorded in audit entries and used for throttling."""
from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _valid(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR, or the address our own proxy appended to X-Forwarded-For when trusted.

    Only the last X-Forwarded-For entry is taken: it is the one the trusted proxy wrote;
    everything before it came from the client and can be forged.
    """
    if settings.TRUST_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            ip = _valid(forwarded.split(",")[-1])
            if ip:
                return ip
    return _valid(request.META.get("REMOTE_ADDR", ""))
