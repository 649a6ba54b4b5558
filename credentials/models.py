"""SMTP logins, their feature toggles, REST API keys, and the append-only audit log."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.html import escape

# (field name, label, what it does): the explanations are DESIGN.md's feature table, less what
# is not built yet (bounces are received, not yet read).
FEATURES: list[tuple[str, str, str]] = [
    (
        "clicktracking",
        "Click tracking",
        "Rewrites every http(s) hyperlink to a signed tracking URL that records the click "
        "and redirects to the original.",
    ),
    (
        "openstracking",
        "Open tracking",
        "Rewrites image URLs to signed tracking URLs (records an open, redirects to the "
        "image); adds a 1×1 pixel where no image can carry it.",
    ),
    (
        "preventscam",
        "Prevent scam warnings",
        "Leaves alone every link whose visible text is itself a URL or host name, so mail "
        'clients show no "link goes elsewhere" warning.',
    ),
    (
        "bouncetracking",
        "Bounce tracking",
        "Replaces the envelope sender with a signed VERP address on our bounce domain, so "
        "bounces come to smtpeter instead of to you (reading them is not built yet).",
    ),
    (
        "inlinecss",
        "Inline CSS",
        'Copies <style> rules into style="" attributes (media queries stay in <style>).',
    ),
]
FEATURE_NAMES: list[str] = [name for name, _, _ in FEATURES]


def help_text(text: str) -> str:
    """Plain text as a help text: the admin and form.as_p print help texts as HTML, so a plain
    "<style>" would open an element there and swallow the rest of the page."""
    return escape(text)


class Login(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="smtp_logins"
    )
    username = models.CharField(max_length=64, unique=True, editable=False)
    password_hash = models.CharField(max_length=256, editable=False)
    description = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)

    clicktracking = models.BooleanField("Click tracking", default=False,
                                        help_text=help_text(FEATURES[0][2]))
    openstracking = models.BooleanField("Open tracking", default=False,
                                        help_text=help_text(FEATURES[1][2]))
    preventscam = models.BooleanField("Prevent scam warnings", default=False,
                                      help_text=help_text(FEATURES[2][2]))
    bouncetracking = models.BooleanField("Bounce tracking", default=False,
                                         help_text=help_text(FEATURES[3][2]))
    inlinecss = models.BooleanField("Inline CSS", default=False,
                                    help_text=help_text(FEATURES[4][2]))

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return self.username

    def featureset(self) -> dict[str, bool]:
        return {name: getattr(self, name) for name in FEATURE_NAMES}

    def enabled_features(self) -> list[str]:
        return [name for name in FEATURE_NAMES if getattr(self, name)]

    def feature_flags(self) -> list[dict]:
        """Name, label and state of each feature, in FEATURES order (for tables)."""
        return [{"name": n, "label": label, "on": getattr(self, n)} for n, label, _ in FEATURES]


class AuditEntry(models.Model):
    """One change to a login. Rows are written once and never changed or deleted."""

    class Action(models.TextChoices):
        CREATED = "created", "created"
        FEATURES_CHANGED = "features_changed", "features changed"
        DESCRIPTION_CHANGED = "description_changed", "description changed"
        ENABLED = "enabled", "enabled"
        DISABLED = "disabled", "disabled"
        PASSWORD_RESET = "password_reset", "password reset"
        DELETED = "deleted", "deleted"
        # API keys (credentials.apikeys): login is empty, details name the key.
        API_KEY_CREATED = "api_key_created", "API key created"
        API_KEY_REVOKED = "api_key_revoked", "API key revoked"

    time = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=32, choices=Action.choices, db_index=True)
    # Names are copied so that the entry still reads right after a login or user is deleted.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_name = models.CharField(max_length=150, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    owner_name = models.CharField(max_length=150)
    login = models.ForeignKey(
        Login, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_entries"
    )
    login_username = models.CharField(max_length=64, db_index=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    features_before = models.JSONField(null=True, blank=True)
    features_after = models.JSONField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-time", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        when = f"{self.time:%Y-%m-%d %H:%M:%S}"
        return f"{when} {self.actor_name} {self.action} {self.login_username}"

    def feature_changes(self) -> list[dict]:
        """The features whose state differs between before and after, with their labels."""
        before, after = self.features_before or {}, self.features_after or {}
        if not before or not after:
            return []
        return [
            {"name": n, "label": label, "before": before.get(n), "after": after.get(n)}
            for n, label, _ in FEATURES
            if before.get(n) != after.get(n)
        ]

    def features_on(self) -> list[str]:
        """Labels of the features on after the change (before it, for a deletion)."""
        states = self.features_after if self.features_after is not None else self.features_before
        return [label for n, label, _ in FEATURES if (states or {}).get(n)]

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("audit entries are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("audit entries are append-only")


class ApiKey(models.Model):
    """A REST API key: a random 256-bit token of which only the SHA-256 digest is stored
    (credentials.apikeys); read-only or read-write; revoked keys stay, for the record."""

    class Scope(models.TextChoices):
        READ = "read", "read-only"
        WRITE = "write", "read-write"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.READ)
    # The token's first characters, shown in lists so that a person can tell keys apart.
    prefix = models.CharField(max_length=16, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
