"""Who is calling and what they may do: a Bearer API key (credentials.apikeys), its scope
(read-only keys may only read), and a request budget per key (API_RATE_LIMIT per minute)."""
from __future__ import annotations

import logging

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions, throttling

from credentials import apikeys
from credentials.clientip import client_ip

log = logging.getLogger("api.auth")


class BearerKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer smtpeter_…``: request.user is the key's owner, request.auth the
    key. A missing header is "not authenticated"; an unknown, revoked or expired key is 401."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise exceptions.AuthenticationFailed("Authorization must be: Bearer <API key>")
        key, why = apikeys.authenticate(token.strip())
        if key is None:
            # The key's first characters only: a log line never holds a whole token.
            log.warning("API request refused: %s (%s…) from %s", why,
                        token.strip()[:apikeys.PREFIX_SHOWN], client_ip(request))
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired API key.")
        return key.owner, key

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'


class KeyScope(permissions.BasePermission):
    """Any key may read; only a read-write key may write."""

    message = "This API key is read-only."

    def has_permission(self, request, view) -> bool:
        if request.auth is None:
            return False
        return (request.method in permissions.SAFE_METHODS
                or request.auth.scope == apikeys.Scope.WRITE)


class PerKeyThrottle(throttling.SimpleRateThrottle):
    """API_RATE_LIMIT requests per minute per key, counted in the cache (CACHE_URL: one
    shared cache when several web processes serve the API)."""

    scope = "key"

    def get_rate(self) -> str:
        return f"{settings.API_RATE_LIMIT}/min"

    def get_cache_key(self, request, view) -> str | None:
        if request.auth is None:
            return None
        return f"api-throttle:{request.auth.pk}"


class BearerKeyScheme(OpenApiAuthenticationExtension):
    """The key as the OpenAPI schema states it (drf-spectacular finds this by its target)."""

    target_class = "api.auth.BearerKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "An API key from the dashboard's API keys page."}
