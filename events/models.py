"""What happened to a message: one Event per delivery, deferral, failure, bounce, open, click,
complaint, warning or DSN. events.services.record() writes them."""
from __future__ import annotations

from django.conf import settings
from django.db import models


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
