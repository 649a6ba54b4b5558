"""Plain functions that create, change and verify SMTP logins; each change writes its audit entry.

Views, management commands and the SMTP server go through here, so that no change can
skip the audit log and no caller handles a hash itself.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import secrets
import string
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from django.contrib.auth.hashers import check_password, make_password
from django.db import connection, transaction

from smtpeter_site.db import per_vendor, select_sql

from .models import FEATURE_NAMES, AuditEntry, Login
from .models import FEATURES as FEATURES  # for relay/ and api/, which import no models

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser as User
    from django.db.models import QuerySet

PASSWORD_LENGTH = 32
_PASSWORD_ALPHABET = string.ascii_letters + string.digits
# No vowels or look-alikes: generated usernames never spell words or confuse readers.
_USERNAME_ALPHABET = "bcdfghjkmnpqrstvwxz23456789"
Action = AuditEntry.Action
log = logging.getLogger("credentials.audit")
# Who is deleting users right now, for the audit entries of their logins (see receivers.py).
_acting: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("acting", default=None)
# The API key a change is made with (api/ sets it per request): the audit names it.
_key: contextvars.ContextVar[tuple[int, str] | None] = contextvars.ContextVar("key", default=None)


def generate_password() -> str:
    """A random password of PASSWORD_LENGTH letters and digits (~190 bits)."""
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def generate_username() -> str:
    """A random, unique login name such as ``smtp-k7dq2xw9hm``; never derived from the owner."""
    while True:
        name = "smtp-" + "".join(secrets.choice(_USERNAME_ALPHABET) for _ in range(10))
        if not Login.objects.filter(username=name).exists():
            return name


def _audit(
    action: str,
    login: Login,
    actor: User | None,
    ip: str | None,
    before: dict | None = None,
    after: dict | None = None,
    details: dict | None = None,
) -> AuditEntry:
    actor_name = actor_label(actor)
    details = {**(details or {}), **key_details()}
    # Names, action and address only: passwords and hashes never reach a log line.
    log.info(
        "login %s of %s: %s by %s from %s",
        login.username, login.owner.get_username(), action, actor_name, ip or "-",
    )
    return AuditEntry.objects.create(
        action=action,
        actor=actor if actor is not None and actor.pk else None,
        actor_name=actor_name,
        owner=login.owner,
        owner_name=login.owner.get_username(),
        login=login if login.pk else None,
        login_username=login.username,
        ip=ip or None,
        features_before=before,
        features_after=after,
        details=details or {},
    )


def check_feature_names(names: Iterable[str]) -> list[str]:
    names = [n.strip().lower() for n in names if n.strip()]
    unknown = sorted(set(names) - set(FEATURE_NAMES))
    if unknown:
        raise ValueError(
            f"unknown feature(s): {', '.join(unknown)}; known: {', '.join(FEATURE_NAMES)}"
        )
    return names


def check_description(description: str) -> str:
    """The description if it fits the column; ValueError otherwise (PostgreSQL would refuse it
    with a DataError, SQLite would store it silently)."""
    limit = Login._meta.get_field("description").max_length
    if len(description) > limit:
        raise ValueError(
            f"description has {len(description)} characters; at most {limit} are allowed"
        )
    return description


@transaction.atomic
def create_login(
    owner: User,
    *,
    features: Iterable[str] = (),
    description: str = "",
    actor: User | None = None,
    ip: str | None = None,
) -> tuple[Login, str]:
    """Create a login for ``owner``; returns it and its password (the only time it is known)."""
    enabled = set(check_feature_names(features))
    check_description(description)
    password = generate_password()
    login = Login(
        owner=owner,
        username=generate_username(),
        password_hash=make_password(password),
        description=description,
        **{name: name in enabled for name in FEATURE_NAMES},
    )
    login.save()
    _audit(
        Action.CREATED,
        login,
        actor if actor is not None else owner,
        ip,
        after=login.featureset(),
        details={"description": description},
    )
    return login, password


@transaction.atomic
def update_login(
    login: Login,
    *,
    actor: User | None,
    ip: str | None = None,
    description: str | None = None,
    features: dict[str, bool] | None = None,
) -> list[AuditEntry]:
    """Change description and/or features: one audit entry per kind of change, none if none."""
    entries = []
    login = Login.objects.select_for_update().get(pk=login.pk)
    if description is not None and description != login.description:
        check_description(description)
        old = login.description
        login.description = description
        login.save(update_fields=["description", "updated"])
        entries.append(
            _audit(
                Action.DESCRIPTION_CHANGED, login, actor, ip,
                details={"before": old, "after": description},
            )
        )
    if features is not None:
        unknown = set(features) - set(FEATURE_NAMES)
        if unknown:
            raise ValueError(f"unknown feature(s): {', '.join(sorted(unknown))}")
        before = login.featureset()
        after = {**before, **{k: bool(v) for k, v in features.items()}}
        if after != before:
            for name, value in after.items():
                setattr(login, name, value)
            login.save(update_fields=[*FEATURE_NAMES, "updated"])
            entries.append(_audit(Action.FEATURES_CHANGED, login, actor, ip, before, after))
    return entries


@transaction.atomic
def set_enabled(
    login: Login, enabled: bool, *, actor: User | None, ip: str | None = None
) -> AuditEntry | None:
    login = Login.objects.select_for_update().get(pk=login.pk)
    if login.enabled == enabled:
        return None
    login.enabled = enabled
    login.save(update_fields=["enabled", "updated"])
    action = Action.ENABLED if enabled else Action.DISABLED
    return _audit(action, login, actor, ip, login.featureset(), login.featureset())


@transaction.atomic
def reset_password(login: Login, *, actor: User | None, ip: str | None = None) -> str:
    """Give the login a new generated password and return it (shown once, never stored)."""
    password = generate_password()
    login = Login.objects.select_for_update().get(pk=login.pk)
    login.password_hash = make_password(password)
    login.save(update_fields=["password_hash", "updated"])
    _audit(Action.PASSWORD_RESET, login, actor, ip)
    return password


@transaction.atomic
def delete_login(
    login: Login, *, actor: User | None, ip: str | None = None, details: dict | None = None
) -> bool:
    """Delete the login with its audit entry; False (and no entry) if it is gone already.

    The row is locked first: of two overlapping deletes the second waits for the first and
    then finds nothing, instead of auditing (and deleting) a row that no longer exists.
    """
    login = Login.objects.select_for_update().filter(pk=login.pk).first()
    if login is None:
        return False
    _audit(Action.DELETED, login, actor, ip, before=login.featureset(), details=details)
    login.delete()
    return True


@contextlib.contextmanager
def through_key(key_id: int, name: str) -> Iterator[None]:
    """Changes made inside are made with this API key: the audit entries (of logins and of
    suppressions) name it after the owner, "alice (API key #3 deploy)", and in details."""
    token = _key.set((key_id, name))
    try:
        yield
    finally:
        _key.reset(token)


def actor_label(actor: User | None) -> str:
    """The audit's "by": the user's name, with the API key they acted through if any."""
    name = actor.get_username() if actor is not None else "system"
    key = _key.get()
    if key is None:
        return name
    return f"{name} (API key #{key[0]} {key[1]})"[:150]


def key_details() -> dict:
    """{"api_key": {...}} for an audit entry's details when made through an API key, else {}."""
    key = _key.get()
    return {} if key is None else {"api_key": {"id": key[0], "name": key[1]}}


@contextlib.contextmanager
def acting(actor: User | None, ip: str | None = None) -> Iterator[None]:
    """Name the actor and address for deletions that happen deeper down (a user's logins)."""
    token = _acting.set((actor, ip))
    try:
        yield
    finally:
        _acting.reset(token)


def delete_logins_of(owner: User) -> int:
    """Delete every login of ``owner`` through delete_login (audited), before the owner goes.

    The actor is the one named with ``acting()`` (the admin does), else "system".
    """
    actor, ip = _acting.get() or (None, None)
    logins = list(Login.objects.filter(owner=owner).select_related("owner"))
    return sum(delete_login(login, actor=actor, ip=ip, details={"reason": "owner deleted"})
               for login in logins)


def logins_of(owner: User) -> QuerySet[Login]:
    """The owner's logins, by username: what other apps may offer the owner to choose from."""
    return Login.objects.filter(owner=owner).order_by("username")


def own_login(owner: User, username: str) -> Login | None:
    """The owner's login with this username, or None (another owner's is None too)."""
    return Login.objects.filter(owner=owner, username=username).first()


def own_login_by_id(owner: User, login_id: int) -> Login | None:
    return Login.objects.select_related("owner").filter(owner=owner, pk=login_id).first()


def owns_login(owner: User, login_id: int) -> bool:
    return Login.objects.filter(pk=login_id, owner=owner).exists()


def login_by_username(username: str) -> Login | None:
    return Login.objects.filter(username=username).first()


def verify_password(login: Login, password: str) -> bool:
    """argon2 check (CPU-bound and slow by design): callers on an event loop run it in a thread."""
    return check_password(password, login.password_hash)


def authenticate(username: str, password: str) -> Login | None:
    """The enabled login with this username and password, or None (same cost either way)."""
    login = Login.objects.select_related("owner").filter(username=username).first()
    if login is None:
        # Spend the same argon2 time so a wrong username cannot be told from a wrong password.
        make_password(password)
        return None
    if not verify_password(login, password) or not login.enabled:
        return None
    return login


# -- for the SMTP server: hot paths in plain SQL --------------------------------------------
# Compiling an ORM query takes the GIL from the SMTP event loop for longer than the query
# itself takes; these run on every AUTH and every group commit, so their SQL is built once
# per database vendor from the model's metadata.

@per_vendor
def _statements(conn) -> dict[str, str]:
    return {
        "auth": select_sql(conn, Login, ["id", "password_hash", "enabled", "owner"],
                           "username") + " = %s",
        "features": select_sql(conn, Login, ["id", *FEATURE_NAMES], "id") + " IN ",
    }


def _sql(name: str) -> str:
    return _statements(connection)[name]


class AuthRow(NamedTuple):
    id: int
    password_hash: str
    enabled: bool
    owner_id: int


def auth_row(username: str) -> AuthRow | None:
    """The login's id, hash, enabled flag and owner, for a cached AUTH's re-check; or None."""
    with connection.cursor() as cursor:
        cursor.execute(_sql("auth"), [username])
        row = cursor.fetchone()
    return None if row is None else AuthRow(row[0], row[1], bool(row[2]), row[3])


def featuresets(login_ids: Iterable[int]) -> dict[int, dict[str, bool]]:
    """{login id: feature set} of those logins that exist (a deleted one is left out)."""
    ids = sorted(set(login_ids))
    if not ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(_sql("features") + f"({', '.join(['%s'] * len(ids))})", ids)
        return {
            row[0]: dict(zip(FEATURE_NAMES, map(bool, row[1:]), strict=True))
            for row in cursor.fetchall()
        }


def touch_last_used(login_ids: Iterable[int], when: datetime) -> None:
    """Record that these logins were used (a hint for the dashboard, written in batches)."""
    Login.objects.filter(pk__in=list(login_ids)).update(last_used=when)
