"""A customer's sender domains, their DKIM keys (private halves encrypted at rest), and the
audit log of changes to them. Only senders.services writes these tables."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class SenderDomain(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="sender_domains")
    domain = models.CharField(max_length=253)  # lower-case, IDNA (A-labels)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set when "Check DNS" found the active key's DKIM record right; cleared when a later check
    # did not (lapsed_at then says when): only a verified domain signs its own mail.
    verified_at = models.DateTimeField(null=True, blank=True)
    lapsed_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    last_check = models.JSONField(default=dict, blank=True)  # the last check's results per record

    class Meta:
        ordering = ["domain"]
        constraints = [models.UniqueConstraint(fields=["owner", "domain"],
                                               name="sender_domain_once_per_owner")]

    def __str__(self) -> str:
        return self.domain


class DkimKey(models.Model):
    class Algorithm(models.TextChoices):
        RSA = "rsa-sha256", "RSA 2048"
        ED25519 = "ed25519-sha256", "Ed25519"

    class State(models.TextChoices):
        NEXT = "next", "published next (rotation: signs once its record checks right)"
        ACTIVE = "active", "active"
        RETIRING = "retiring", "retiring (keep its record until the grace period ends)"

    domain = models.ForeignKey(SenderDomain, on_delete=models.CASCADE, related_name="keys")
    selector = models.CharField(max_length=63)
    algorithm = models.CharField(max_length=16, choices=Algorithm.choices)
    state = models.CharField(max_length=16, choices=State.choices)
    public_key = models.TextField()  # the p= value, base64
    private_key = models.BinaryField()  # AES-GCM under senders.keys' key; never shown
    created_at = models.DateTimeField(auto_now_add=True)
    retire_at = models.DateTimeField(null=True, blank=True)  # retiring: deleted after this

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["domain", "selector"],
                                               name="dkim_selector_once_per_domain")]

    def __str__(self) -> str:
        return f"{self.selector}._domainkey.{self.domain.domain}"


class SenderAudit(models.Model):
    """One change to a sender domain. Rows are written once and never changed."""

    time = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=32)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                              related_name="+")
    domain = models.CharField(max_length=253)  # copied: the entry outlives the domain
    ip = models.GenericIPAddressField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-time", "-id"]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.action} {self.domain}"
