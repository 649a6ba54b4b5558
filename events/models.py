"""What happened to a message: one Event per delivery, deferral, failure, bounce, open, click,
complaint, warning or DSN. events.services.record() writes them. The webhook endpoints of
customers, their outbox (one row per event and endpoint), its attempts and the audit of changes."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Event(models.Model):
    class Type(models.TextChoices):
        DELIVERY = "delivery", "delivery"
        DEFERRAL = "deferral", "deferral"
        FAILURE = "failure", "failure"
        BOUNCE = "bounce", "bounce"
        COMPLAINT = "complaint", "complaint"
        OPEN = "open", "open"
        CLICK = "click", "click"
        # Delivery went on, but not as asked: a render failed or timed out and the message
        # went out unchanged, or a part was left alone (data says why).
        WARNING = "warning", "warning"
        DSN = "dsn", "DSN sent"
        # An auto-reply (vacation, out of office) came back to the VERP address.
        RESPONSE = "response", "auto-reply"

    type = models.CharField(max_length=16, choices=Type.choices, db_index=True)
    time = models.DateTimeField(auto_now_add=True, db_index=True)
    message = models.ForeignKey(
        "relay.Message", null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    recipient = models.ForeignKey(
        "relay.Recipient", null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    data = models.JSONField(default=dict, blank=True)
    # Reasons to leave this event out of statistics, e.g. ["scanner", "head"].
    flags = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-time", "-id"]
        indexes = [
            # The click endpoint's "fast" flag reads a recipient's latest delivery time on
            # every click: MAX(time) WHERE recipient = ? AND type = 'delivery' is one index probe.
            models.Index(fields=["recipient", "type", "time"], name="event_rcpt_type_time"),
        ]

    def __str__(self) -> str:
        return f"{self.type} message={self.message_id} recipient={self.recipient_id}"


class DailyStat(models.Model):
    """One closed UTC day's count of one metric for one owner, login and tag (events.stats
    writes them; tag "" is every message of the login, whatever its tags). Rolled up from
    the events once a day is closed, so that a statistics page reads a few hundred rows
    instead of a million events; kept when retention deletes the messages and events."""

    day = models.DateField()
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    login_id = models.BigIntegerField(default=0)  # 0: no login (deleted, or none); no FK: kept
    tag = models.CharField(max_length=255, blank=True)
    metric = models.CharField(max_length=16)  # events.stats.METRICS
    total = models.IntegerField(default=0)  # without machine-flagged opens and clicks
    total_all = models.IntegerField(default=0)  # with them
    unique = models.IntegerField(default=0)  # recipients counted for the first time that day
    unique_all = models.IntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["owner", "tag", "day"], name="dailystat_owner_tag_day")]


class DailyLink(models.Model):
    """Clicks on one URL in one closed UTC day, per owner, login and tag (like DailyStat)."""

    day = models.DateField()
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    login_id = models.BigIntegerField(default=0)
    tag = models.CharField(max_length=255, blank=True)
    url = models.TextField()
    clicks = models.IntegerField(default=0)
    clicks_all = models.IntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["owner", "tag", "day"], name="dailylink_owner_tag_day")]


class RolledDay(models.Model):
    """A UTC day whose DailyStat and DailyLink rows are written (for every owner)."""

    day = models.DateField(unique=True)
    rolled_at = models.DateTimeField(auto_now_add=True)
class WebhookEndpoint(models.Model):
    """A customer's URL that gets a signed POST for each event of the chosen types
    (events.webhooks)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="+")
    url = models.CharField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    event_types = models.JSONField(default=list)  # Event.Type values
    # The signing secret ("whsec_…"), encrypted with a key derived from SECRET_KEY: it must be
    # read back to sign, so it cannot be hashed like a password.
    secret_encrypted = models.TextField()
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    # The first failed attempt since the last success: failing for WEBHOOK_RETRY_WINDOW
    # disables the endpoint.
    failing_since = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["owner", "enabled"], name="webhook_owner_enabled")]

    def __str__(self) -> str:
        return f"webhook {self.pk} {self.url}"


class WebhookDelivery(models.Model):
    """The outbox: one event to POST to one endpoint, written with the event in one
    transaction, done only after a 2xx."""

    class State(models.TextChoices):
        PENDING = "pending", "pending"
        DELIVERED = "delivered", "delivered"
        FAILED = "failed", "gave up"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE,
                                 related_name="deliveries")
    # Null for a test event, whose payload is stored here instead.
    event = models.ForeignKey(Event, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="+")
    payload = models.JSONField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    created = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    leased_by = models.CharField(max_length=64, blank=True)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    last_response = models.CharField(max_length=1000, blank=True, db_default="")
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="webhook_due")]

    def __str__(self) -> str:
        return f"webhook delivery {self.pk} ({self.state})"


class WebhookAttempt(models.Model):
    """One POST of the outbox: the endpoint's delivery log."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE,
                                 related_name="attempts")
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE,
                                 related_name="attempts_made")
    time = models.DateTimeField(default=timezone.now)
    status = models.PositiveSmallIntegerField(null=True, blank=True)  # null: no answer
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    response_excerpt = models.CharField(max_length=1000, blank=True)

    class Meta:
        ordering = ["-time", "-id"]
        indexes = [models.Index(fields=["endpoint", "-time"], name="webhook_attempt_log")]


class WebhookAudit(models.Model):
    """One change to a webhook endpoint by a person (or the sender disabling it). Append-only."""

    class Action(models.TextChoices):
        CREATED = "created", "created"
        CHANGED = "changed", "changed"
        ENABLED = "enabled", "enabled"
        DISABLED = "disabled", "disabled"
        DELETED = "deleted", "deleted"
        TESTED = "tested", "test event sent"

    time = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=16, choices=Action.choices)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                              related_name="+")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")
    actor_name = models.CharField(max_length=150, blank=True)  # "" : the sender itself
    endpoint = models.ForeignKey(WebhookEndpoint, null=True, blank=True,
                                 on_delete=models.SET_NULL, related_name="+")
    url = models.CharField(max_length=2000)
    ip = models.GenericIPAddressField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-time", "-id"]

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("audit entries are append-only")
        super().save(*args, **kwargs)
