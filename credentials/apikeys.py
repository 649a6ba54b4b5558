"""REST API keys: create (the token is returned once), list, revoke, and look a token up.

A token is 32 random bytes (256 bits) from ``secrets``; the database keeps its SHA-256 digest
only. argon2 is for passwords people choose: it makes each guess of a low-entropy secret slow.
A 256-bit random token cannot be guessed at any speed, so a fast hash loses nothing, and it
lets a request find its key by one unique-index lookup (a salted argon2 hash cannot be looked
up, and would cost ~120 ms of CPU on every API request). Creation and revocation are audited
like login changes (AuditEntry, logger credentials.audit).
"""
from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from .models import ApiKey, AuditEntry

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser as User
    from django.db.models import QuerySet

TOKEN_PREFIX = "smtpeter_"
PREFIX_SHOWN = len(TOKEN_PREFIX) + 6
# last_used is a hint: written at most this often per key, not on every request.
LAST_USED_EVERY = timedelta(seconds=60)
Scope = ApiKey.Scope
log = logging.getLogger("credentials.audit")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _audit(action: str, key: ApiKey, actor: User | None, ip: str | None) -> None:
    from .services import actor_label

    actor_name = actor_label(actor)
    owner_name = key.owner.get_username()
    log.info("API key #%s %r of %s: %s by %s from %s",
             key.pk, key.name, owner_name, action, actor_name, ip or "-")
    AuditEntry.objects.create(
        action=action, actor=actor if actor is not None and actor.pk else None,
        actor_name=actor_name, owner=key.owner, owner_name=owner_name, login=None,
        login_username="", ip=ip or None,
        details={"api_key": {"id": key.pk, "name": key.name, "scope": key.scope,
                             "prefix": key.prefix,
                             "expires_at": key.expires_at.isoformat() if key.expires_at
                             else None}},
    )


def check_name(name: str) -> str:
    name = name.strip()
    limit = ApiKey._meta.get_field("name").max_length
    if not name:
        raise ValueError("a key needs a name")
    if len(name) > limit:
        raise ValueError(f"name has {len(name)} characters; at most {limit} are allowed")
    return name


@transaction.atomic
def create_key(owner: User, name: str, scope: str = Scope.READ, *,
               expires_at: datetime | None = None, actor: User | None = None,
               ip: str | None = None) -> tuple[ApiKey, str]:
    """A new key of ``owner`` and its token (the only time the token is known)."""
    if scope not in Scope.values:
        raise ValueError(f"unknown scope {scope!r}; known: {', '.join(Scope.values)}")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValueError("the expiry must be in the future")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(owner=owner, name=check_name(name), scope=scope,
                                prefix=token[:PREFIX_SHOWN], digest=digest(token),
                                expires_at=expires_at)
    _audit(AuditEntry.Action.API_KEY_CREATED, key, actor if actor is not None else owner, ip)
    return key, token


@transaction.atomic
def revoke_key(key: ApiKey, *, actor: User | None, ip: str | None = None) -> bool:
    """Revoke the key (it answers 401 from now on); False if it was revoked already."""
    key = ApiKey.objects.select_for_update().select_related("owner").get(pk=key.pk)
    if key.revoked_at is not None:
        return False
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    _audit(AuditEntry.Action.API_KEY_REVOKED, key, actor, ip)
    return True


def keys_of(owner: User) -> QuerySet[ApiKey]:
    """The owner's keys, newest first, revoked ones included."""
    return ApiKey.objects.filter(owner=owner).order_by("-created", "-id")


def own_key(owner: User, key_id: int) -> ApiKey | None:
    return ApiKey.objects.filter(owner=owner, pk=key_id).select_related("owner").first()


def authenticate(token: str, now: datetime | None = None) -> tuple[ApiKey | None, str]:
    """(the key, "") for a live token; (None, why) for an unknown, revoked or expired one."""
    key = (ApiKey.objects.select_related("owner").filter(digest=digest(token)).first()
           if token.startswith(TOKEN_PREFIX) else None)
    now = now or timezone.now()
    if key is None:
        return None, "unknown key"
    if key.revoked_at is not None:
        return None, "revoked key"
    if key.expires_at is not None and key.expires_at <= now:
        return None, "expired key"
    if not key.owner.is_active:
        return None, "owner inactive"
    if key.last_used is None or now - key.last_used >= LAST_USED_EVERY:
        ApiKey.objects.filter(pk=key.pk).update(last_used=now)
        key.last_used = now
    return key, ""
