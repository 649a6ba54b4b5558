"""What happened to a message: one Event per delivery, deferral, failure, bounce, open, click,
complaint, warning or DSN. events.services.record() writes them."""
from __future__ import annotations

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
