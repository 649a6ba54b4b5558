"""Plain functions over sender domains and their DKIM keys; each change writes its audit entry.

The dashboard, the management commands and the delivery worker come through here: nobody
else reads a private key or decides whether a domain signs its own mail.
"""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import keys
from .dkim import ED25519, RSA, Signer
from .dnscheck import ERROR, RIGHT, Found, Wanted, check
from .models import DkimKey, SenderAudit, SenderDomain

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser as User
    from django.db.models import QuerySet

log = logging.getLogger("senders")
MAX_DOMAINS = 100  # per owner


class DomainError(ValueError):
    """A domain the customer cannot add (the text says why)."""


def _audit(action: str, domain: SenderDomain | str, owner: User | None, actor: User | None,
           ip: str | None, **details) -> None:
    # A change made through the REST API names its key, as login changes do.
    from credentials.services import key_details

    name = domain if isinstance(domain, str) else domain.domain
    details = {**details, **key_details()}
    SenderAudit.objects.create(action=action, domain=name, owner=owner, actor=actor, ip=ip,
                               details=details)
    log.info("sender domain %s: %s by %s %s", name, action,
             getattr(actor, "username", None) or "system", details or "")


def normalize(text: str) -> str:
    """The domain as stored: lower-case A-labels; DomainError for anything else."""
    name = text.strip().rstrip(".").lower()
    if name.startswith("@") or "@" in name:
        name = name.rpartition("@")[2]
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise DomainError(f"{text!r} is not a domain name") from None
    labels = name.split(".")
    if (len(name) > 253 or len(labels) < 2 or labels[-1].isdigit()
            or not all(0 < len(label) <= 63 and label.replace("-", "").isalnum()
                       and not label.startswith("-") and not label.endswith("-")
                       for label in labels)):
        raise DomainError(f"{text!r} is not a domain name")
    return name


def _selector(algorithm: str) -> str:
    # Unique per key, dated so a person reading DNS sees which is newer.
    kind = "e" if algorithm == ED25519 else "r"
    return f"st{timezone.now():%Y%m}{kind}{secrets.token_hex(2)}"


def _new_key(domain: SenderDomain, algorithm: str, state: str) -> DkimKey:
    private, public = keys.generate(algorithm)
    selector = _selector(algorithm)
    return DkimKey.objects.create(domain=domain, selector=selector, algorithm=algorithm,
                                  state=state, public_key=public,
                                  private_key=keys.seal(private, domain.domain, selector))


def add_domain(owner: User, domain: str, *, ed25519: bool = False, actor: User | None = None,
               ip: str | None = None) -> SenderDomain:
    """A new, unverified sender domain with an RSA 2048 key (and an Ed25519 one if asked)."""
    name = normalize(domain)
    with transaction.atomic():
        if SenderDomain.objects.filter(owner=owner).count() >= MAX_DOMAINS:
            raise DomainError(f"at most {MAX_DOMAINS} sender domains per account")
        try:
            with transaction.atomic():
                row = SenderDomain.objects.create(owner=owner, domain=name)
        except IntegrityError:
            raise DomainError(f"{name} is one of your sender domains already") from None
        algorithms = [RSA, ED25519] if ed25519 else [RSA]
        for algorithm in algorithms:
            _new_key(row, algorithm, DkimKey.State.ACTIVE)
        _audit("added", row, owner, actor, ip, algorithms=algorithms)
    return row


def delete_domain(domain: SenderDomain, *, actor: User | None, ip: str | None = None) -> None:
    with transaction.atomic():
        _audit("deleted", domain, domain.owner, actor, ip)
        domain.delete()


def rotate(domain: SenderDomain, *, actor: User | None, ip: str | None = None) -> list[DkimKey]:
    """A next key (new selector) per algorithm in use. It signs once "Check DNS" finds its
    record; the key it replaces keeps its record for SENDER_ROTATION_GRACE_DAYS after that."""
    with transaction.atomic():
        current = list(domain.keys.filter(state=DkimKey.State.ACTIVE))
        pending = {k.algorithm for k in domain.keys.filter(state=DkimKey.State.NEXT)}
        made = [_new_key(domain, k.algorithm, DkimKey.State.NEXT)
                for k in current if k.algorithm not in pending]
        if made:
            _audit("rotation_started", domain, domain.owner, actor, ip,
                   selectors=[k.selector for k in made])
    return made


def domains_of(owner: User) -> QuerySet[SenderDomain]:
    return SenderDomain.objects.filter(owner=owner).prefetch_related("keys")


def own_domain(owner: User, domain_id: int) -> SenderDomain | None:
    """The owner's domain with that id; None for another owner's (the view says 404)."""
    return SenderDomain.objects.filter(owner=owner, pk=domain_id).first()


# -- the records to publish and their check ------------------------------------------------------

def spf_mechanism() -> str:
    """The SPF mechanism that covers the addresses we send from (SENDER_SPF_MECHANISM, else
    a:SMTP_HOSTNAME: the relay's own A/AAAA records)."""
    return settings.SENDER_SPF_MECHANISM or f"a:{settings.SMTP_HOSTNAME}"


def wanted(domain: SenderDomain) -> list[Wanted]:
    """Every record the customer is to publish for this domain."""
    name = domain.domain
    out = [Wanted("dkim", f"{k.selector}._domainkey.{name}", keys.txt_value(k.algorithm,
                                                                             k.public_key),
                  k.selector)
           for k in domain.keys.all()]
    out.append(Wanted("spf", name, spf_mechanism()))
    out.append(Wanted("dmarc", f"_dmarc.{name}",
                      f"v=DMARC1; p=none; adkim=r; aspf=r; rua=mailto:dmarc-reports@{name}"))
    return out


def records(domain: SenderDomain) -> list[dict]:
    """Each record to publish with what the last check found there (None: not checked) and
    its DKIM key (None for SPF and DMARC): the domain's page and the REST API show these."""
    found = {(r["kind"], r["name"]): r for r in domain.last_check.get("records", [])}
    by_selector = {k.selector: k for k in domain.keys.all()}
    return [{"want": want, "found": found.get((want.kind, want.name)),
             "key": by_selector.get(want.selector)} for want in wanted(domain)]


def resolver():
    from relay.mx import make_resolver  # no cache across checks: a fixed record shows at once

    return make_resolver(settings.DNS_NAMESERVERS, timeout=settings.SENDER_DNS_TIMEOUT,
                         lifetime=settings.SENDER_DNS_TIMEOUT * 2)


def check_domain(domain: SenderDomain, *, actor: User | None = None, ip: str | None = None,
                 dns_resolver=None) -> list[Found]:
    """Look the domain's records up and store what was found. The domain is verified while
    its active keys' DKIM records are right; a verified domain whose record went missing or
    wrong lapses (a failed lookup changes nothing). A next key whose record is right
    becomes active, and the key it replaces starts its grace period."""
    found = asyncio.run(check(dns_resolver or resolver(), wanted(domain)))
    by_selector = {f.selector: f for f in found if f.kind == "dkim"}
    now = timezone.now()
    with transaction.atomic():
        row = SenderDomain.objects.select_for_update().get(pk=domain.pk)
        for key in row.keys.filter(state=DkimKey.State.NEXT):
            if by_selector.get(key.selector, None) and by_selector[key.selector].status == RIGHT:
                old = list(row.keys.filter(state=DkimKey.State.ACTIVE, algorithm=key.algorithm))
                grace = now + timedelta(days=settings.SENDER_ROTATION_GRACE_DAYS)
                for k in old:
                    k.state, k.retire_at = DkimKey.State.RETIRING, grace
                    k.save(update_fields=["state", "retire_at"])
                key.state = DkimKey.State.ACTIVE
                key.save(update_fields=["state"])
                _audit("rotated", row, row.owner, actor, ip, active=key.selector,
                       retiring=[k.selector for k in old], retire_at=grace.isoformat())
        for key in row.keys.filter(state=DkimKey.State.RETIRING, retire_at__lte=now):
            _audit("key_retired", row, row.owner, actor, ip, selector=key.selector)
            key.delete()
        active = {k.selector for k in row.keys.filter(state=DkimKey.State.ACTIVE)}
        states = [by_selector[s].status for s in active if s in by_selector]
        if states and all(s == RIGHT for s in states):
            if row.verified_at is None:
                row.verified_at, row.lapsed_at = now, None
                _audit("verified", row, row.owner, actor, ip)
        elif row.verified_at is not None and ERROR not in states:
            row.verified_at, row.lapsed_at = None, now
            _audit("lapsed", row, row.owner, actor, ip,
                   dkim={s: by_selector[s].status for s in active if s in by_selector})
            log.warning("sender domain %s of owner %s stopped verifying: its mail is no longer "
                        "signed with its own keys", row.domain, row.owner_id)
        row.checked_at = now
        row.last_check = {"at": now.isoformat(), "records": [f.as_dict() for f in found]}
        row.save(update_fields=["verified_at", "lapsed_at", "checked_at", "last_check"])
    domain.refresh_from_db()
    return found


def recheck(older_than: timedelta | None = None, dns_resolver=None) -> dict[str, int]:
    """Check every domain not checked for older_than (default SENDER_RECHECK_INTERVAL): the
    periodic re-check (manage.py checksenders, from cron)."""
    if older_than is None:
        older_than = timedelta(seconds=settings.SENDER_RECHECK_INTERVAL)
    cutoff = timezone.now() - older_than
    counts = {"checked": 0, "verified": 0, "lapsed": 0}
    due = SenderDomain.objects.filter(checked_at__isnull=True) | SenderDomain.objects.filter(
        checked_at__lt=cutoff)
    for domain in due.order_by("checked_at", "id"):
        was = domain.verified_at is not None
        check_domain(domain, dns_resolver=dns_resolver)
        counts["checked"] += 1
        counts["verified"] += domain.verified_at is not None
        counts["lapsed"] += was and domain.verified_at is None
    return counts


# -- signing -------------------------------------------------------------------------------------

def _parents(domain: str) -> list[str]:
    labels = domain.lower().rstrip(".").split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


def is_verified(owner_id: int | None, from_domain: str) -> bool:
    """Whether from_domain or a parent of it is a verified sender domain of the owner."""
    return owner_id is not None and bool(from_domain) and SenderDomain.objects.filter(
        owner_id=owner_id, domain__in=_parents(from_domain), verified_at__isnull=False).exists()


def signers_for(owner_id: int | None, from_domain: str) -> tuple[str, list[Signer]] | None:
    """(the signing domain, its active keys) when from_domain or a parent of it is a verified
    sender domain of the owner; None otherwise."""
    if owner_id is None or not from_domain:
        return None
    names = _parents(from_domain)
    rows = {d.domain: d for d in SenderDomain.objects.filter(
        owner_id=owner_id, domain__in=names, verified_at__isnull=False)}
    for name in names:  # the most specific verified domain signs
        row = rows.get(name)
        if row is None:
            continue
        out = []
        for k in row.keys.filter(state=DkimKey.State.ACTIVE):
            try:
                out.append(Signer(name, k.selector, k.algorithm,
                                  keys.unseal(k.private_key, name, k.selector)))
            except keys.KeyUnreadable as exc:
                log.error("DKIM key %s of %s unreadable (%s): not signing with it",
                          k.selector, name, exc)
        if out:
            return name, out
    return None


def relay_signer() -> Signer:
    """The relay's own key (DKIM_RELAY_DOMAIN, DKIM_RELAY_SELECTOR), made on first use: DSNs
    and mail from domains that are not verified are signed with it."""
    path = Path(settings.DKIM_RELAY_KEY_FILE)
    if not path.exists():
        ensure_relay_key()
    return Signer(settings.DKIM_RELAY_DOMAIN, settings.DKIM_RELAY_SELECTOR, RSA,
                  path.read_bytes())


def ensure_relay_key() -> bool:
    """Write the relay's private key file if there is none (0600); True if made now."""
    path = Path(settings.DKIM_RELAY_KEY_FILE)
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    private, _ = keys.generate(RSA)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    log.info("made the relay's DKIM key %s (publish: manage.py dkimrelaykey)", path)
    return True


def relay_record() -> tuple[str, str]:
    """(name, TXT value) of the relay's own DKIM record."""
    signer = relay_signer()
    return (f"{signer.selector}._domainkey.{signer.domain}",
            keys.txt_value(RSA, keys.public_of(signer.private_key)))
