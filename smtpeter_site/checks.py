"""`manage.py check --deploy`: development addresses left in a production configuration.

The defaults (SITE_URL http://127.0.0.1:8000, BOUNCE_DOMAIN bounces.localhost) make a working
development install; in production they put unreachable tracking links into every message and
VERP addresses no one can answer. Registered by credentials.apps (smtpeter_site is no app).
"""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Tags, Warning, register


def is_local_host(host: str) -> bool:
    """True for localhost, *.localhost, loopback and unspecified addresses."""
    host = host.strip().strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _local_url(url: str) -> bool:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    return host is None or is_local_host(host)


@register(Tags.security, deploy=True)
def check_public_addresses(app_configs=None, **kwargs) -> list[Warning]:
    if settings.DEBUG:
        return []  # development; security.W018 already says DEBUG is on
    found = []
    for code, name in [("W001", "SITE_URL"), ("W002", "TRACKING_BASE_URL")]:
        value = getattr(settings, name)
        if _local_url(value):
            found.append(Warning(
                f"{name} is {value!r}, a local address: recipients and customers cannot "
                "reach it.",
                hint=f"Set {name} to the public https address of the web app.",
                id=f"smtpeter.{code}",
            ))
    if is_local_host(settings.BOUNCE_DOMAIN):
        found.append(Warning(
            f"BOUNCE_DOMAIN is {settings.BOUNCE_DOMAIN!r}: bounces to its VERP addresses "
            "cannot come back.",
            hint="Set BOUNCE_DOMAIN to a domain whose MX points at this relay.",
            id="smtpeter.W003",
        ))
    return found
