"""The durable queue: one Message per accepted DATA, one Recipient per RCPT TO."""
from __future__ import annotations

import itertools
import os
import secrets
import time

from django.conf import settings
from django.db import models


# A per-process counter from a random start: no two ids of one process collide (short of
# 16 million messages in one millisecond), two processes in the same millisecond only by a
# 1 in 16 million chance per pair; and no getrandom() syscall per message on the event loop,
# where releasing the GIL to the queue writer thread cost ~50 µs under load.
def _new_serial() -> itertools.count:
    return itertools.count(int.from_bytes(secrets.token_bytes(3), "big"))


_SERIAL = _new_serial()


def _reseed() -> None:  # a forked worker must not repeat its parent's ids
    global _SERIAL
    _SERIAL = _new_serial()


os.register_at_fork(after_in_child=_reseed)


def new_queue_id() -> str:
    """Time-ordered and unique: milliseconds in hex plus a 24-bit per-process serial."""
    return f"{int(time.time() * 1000):011X}{next(_SERIAL) & 0xFFFFFF:06X}"


class Message(models.Model):
    class Ret(models.TextChoices):
        FULL = "FULL", "full message"
        HDRS = "HDRS", "headers only"

    class Kind(models.TextChoices):
        SUBMISSION = "submission", "authenticated submission"
        BOUNCE = "bounce", "unauthenticated mail to BOUNCE_DOMAIN (bounce/feedback intake)"

    # Chosen before the commit so that the Received header and "queued as" can name it.
    queue_id = models.CharField(max_length=20, unique=True, default=new_queue_id)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.SUBMISSION)

    login = models.ForeignKey(
        "credentials.Login", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The owner outlives the login: events and the API authorise on it.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    mail_from = models.CharField(max_length=512, blank=True)  # "" is the null sender <>
    ret = models.CharField(max_length=4, choices=Ret.choices, blank=True)
    envid = models.CharField(max_length=100, blank=True)  # decoded xtext, case kept
    body = models.CharField(max_length=10, blank=True)  # MAIL FROM BODY=: "", 7BIT, 8BITMIME
    features = models.JSONField(default=dict)  # the login's feature set after header overrides
    tags = models.JSONField(default=list)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    helo = models.CharField(max_length=255, blank=True)
    tls_version = models.CharField(max_length=16, blank=True)
    size = models.PositiveIntegerField(default=0)
    raw = models.BinaryField()  # Received: header + the bytes as submitted

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"message {self.queue_id} from <{self.mail_from}>"


class Recipient(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued", "queued"
        DEFERRED = "deferred", "deferred"
        DELIVERED = "delivered", "delivered"
        FAILED = "failed", "failed"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="recipients")
    address = models.CharField(max_length=512)
    notify = models.CharField(max_length=32, blank=True)  # "", NEVER, or SUCCESS,FAILURE,DELAY
    orcpt = models.CharField(max_length=600, blank=True)  # addr-type;decoded address
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.QUEUED, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_response = models.TextField(blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"<{self.address}> ({self.state})"
