"""The durable queue: one Message per accepted DATA, one Recipient per RCPT TO; each delivery
Attempt, the bytes captured in capture mode, and the staff actions on the queue. Also each
customer's suppression list (relay.suppression writes it)."""
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
# where each syscall releases the GIL to the queue writer thread (measured: bench/README.md).
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
    # Read from the header block at accept time (relay.headers), so that it can be searched.
    subject = models.CharField(max_length=998, blank=True, db_default="")
    raw = models.BinaryField()  # Received: header + the bytes as submitted
    # X-SMTPeter-MaxDeliverTime: set only when it ends delivery before DELIVERY_MAX_LIFETIME.
    max_deliver_until = models.DateTimeField(null=True, blank=True)
    # A DSN is a message of its own; it names the message it reports on.
    dsn_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="dsns"
    )
    # Intake (kind bounce) only, written by relay.intake: when it was read (null: not yet),
    # what it was read as, and the sent message it reports on (whose owner may read it).
    intake_done_at = models.DateTimeField(null=True, blank=True)
    intake_outcome = models.CharField(max_length=16, blank=True, db_default="")
    intake_for = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reports"
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            # The intake's claim: unread intake mail only, a handful of rows however big the
            # queue.
            models.Index(fields=["id"], name="intake_pending",
                         condition=models.Q(kind="bounce", intake_done_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"message {self.queue_id} from <{self.mail_from}>"


class Recipient(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued", "queued"  # not tried yet
        DEFERRED = "deferred", "deferred"  # tried, to be tried again at next_attempt_at
        DELIVERED = "delivered", "delivered"
        FAILED = "failed", "failed"
        HELD = "held", "held by staff"
        # Mail that came in on the mx role without AUTH (bounces, complaints, replies): read by
        # the intake, never claimed for outbound delivery.
        INTAKE = "intake", "intake"
        # Delivered, then a bounce came back for it (relay.intake).
        BOUNCED = "bounced", "bounced"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="recipients")
    address = models.CharField(max_length=512)
    notify = models.CharField(max_length=32, blank=True)  # "", NEVER, or SUCCESS,FAILURE,DELAY
    orcpt = models.CharField(max_length=600, blank=True)  # addr-type;decoded address
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # A claim: which worker holds the recipient until when. An expired lease (a crashed
    # process) makes it claimable again.
    lease_until = models.DateTimeField(null=True, blank=True)
    leased_by = models.CharField(max_length=64, blank=True, db_default="")
    first_deferred_at = models.DateTimeField(null=True, blank=True)
    last_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_enhanced = models.CharField(max_length=16, blank=True, db_default="")
    last_response = models.TextField(blank=True)  # "451 4.7.1 text" as the last hop said it
    # Delivered into the Outbox (capture mode), not to a mail server.
    captured = models.BooleanField(default=False, db_default=False)
    dsn_delayed_sent = models.BooleanField(default=False, db_default=False)
    # The final DSN (failed, delivered or relayed) has been queued.
    dsn_sent = models.BooleanField(default=False, db_default=False)
    updated = models.DateTimeField(auto_now=True)
    # The queue writer inserts with plain SQL and names only the columns it fills: the
    # columns added since carry database defaults.

    class Meta:
        ordering = ["id"]
        indexes = [
            # The claim query (due recipients of a state, oldest due first) and every lookup
            # by state. Not partial: SQLite does not see that state = 'queued' implies a
            # condition state IN (...), and would sort the whole queue for each claim.
            models.Index(fields=["state", "next_attempt_at"], name="rcpt_due"),
        ]

    def __str__(self) -> str:
        return f"<{self.address}> ({self.state})"


class Attempt(models.Model):
    """One delivery attempt of one recipient, with the next hop's words."""

    class Outcome(models.TextChoices):
        DELIVERED = "delivered", "delivered"
        DEFERRED = "deferred", "deferred"
        FAILED = "failed", "failed"

    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="attempts_made")
    time = models.DateTimeField(db_index=True)
    host = models.CharField(max_length=255, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    tls_version = models.CharField(max_length=16, blank=True)
    tls_cipher = models.CharField(max_length=64, blank=True)
    code = models.PositiveSmallIntegerField(null=True, blank=True)
    enhanced = models.CharField(max_length=16, blank=True)
    text = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)

    class Meta:
        ordering = ["time", "id"]

    def __str__(self) -> str:
        return f"{self.outcome} {self.code} via {self.host or '-'}"


class Capture(models.Model):
    """What would have been sent to one recipient (DELIVERY_MODE=capture): the Outbox."""

    recipient = models.OneToOneField(Recipient, on_delete=models.CASCADE, related_name="capture")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="captures")
    time = models.DateTimeField(db_index=True)
    mail_from = models.CharField(max_length=512, blank=True)  # the envelope sender as sent
    data = models.BinaryField()

    class Meta:
        ordering = ["-time", "-id"]

    def __str__(self) -> str:
        return f"capture of {self.recipient_id}"


class QueueAudit(models.Model):
    """One staff action on the queue (retry, hold, release, delete). Append-only."""

    class Action(models.TextChoices):
        RETRY = "retry", "retry now"
        HOLD = "hold", "hold"
        RELEASE = "release", "release"
        DELETE = "delete", "delete"

    time = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=16, choices=Action.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_name = models.CharField(max_length=150)
    # Copied, so that the entry still reads right after the message is deleted.
    queue_id = models.CharField(max_length=20, db_index=True)
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    recipients = models.JSONField(default=list)  # the addresses the action changed
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-time", "-id"]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.queue_id}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("queue audit entries are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("queue audit entries are append-only")


class TrackedLink(models.Model):
    """One URL behind a message's tracking tokens: (message, kind, position) -> url.

    Written once per message when delivery first prepares it (relay.queue.store_links), so a
    click or open looks one row up instead of deriving the message's link list again. Open
    position 0 is the pixel (url ""): every stored message has that row, which also says the
    list is stored.
    """

    class Kind(models.TextChoices):
        CLICK = "c", "click"
        OPEN = "o", "open"

    # No index of its own: the unique constraint's index starts with it.
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+",
                                db_index=False)
    kind = models.CharField(max_length=1, choices=Kind.choices)
    position = models.PositiveIntegerField()
    url = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["message", "kind", "position"],
                                               name="trackedlink_key")]

    def __str__(self) -> str:
        return f"{self.kind}{self.position} of message {self.message_id}"


class Suppression(models.Model):
    """An address a customer's mail is not delivered to (relay.suppression): one per owner
    and address; an entry past expires_at no longer suppresses (null: never expires)."""

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce", "hard bounce"
        COMPLAINT = "complaint", "complaint"
        SOFT_BOUNCES = "soft_bounces", "repeated soft bounces"
        MANUAL = "manual", "added by hand"

    class Source(models.TextChoices):
        INTAKE = "intake", "bounce or complaint"
        DASHBOARD = "dashboard", "dashboard"
        IMPORT = "import", "CSV import"
        API = "api", "API"
        COMMAND = "command", "management command"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="+")
    address = models.CharField(max_length=512)  # lower-cased (relay.suppression.normalize)
    reason = models.CharField(max_length=16, choices=Reason.choices)
    detail = models.TextField(blank=True)  # the remote server's words, or the person's note
    # The bounce or complaint that caused it; the entry outlives the event (retention).
    event = models.ForeignKey("events.Event", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    source = models.CharField(max_length=16, choices=Source.choices)
    created = models.DateTimeField(db_index=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [models.UniqueConstraint(fields=["owner", "address"],
                                               name="suppression_owner_address")]

    def __str__(self) -> str:
        return f"<{self.address}> suppressed ({self.reason}) for owner {self.owner_id}"


class SoftBounce(models.Model):
    """One soft bounce of an address, kept for SUPPRESSION_SOFT_WINDOW_DAYS: enough of them
    within the window suppress it (relay.suppression.record_soft_bounce)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="+")
    address = models.CharField(max_length=512)
    time = models.DateTimeField()
    # Unique: intake processing the same bounce twice (a crash and a re-run) counts it once.
    event = models.OneToOneField("events.Event", null=True, blank=True,
                                 on_delete=models.SET_NULL, related_name="+")

    class Meta:
        indexes = [models.Index(fields=["owner", "address", "time"], name="softbounce_key")]

    def __str__(self) -> str:
        return f"soft bounce of <{self.address}> at {self.time:%Y-%m-%d %H:%M}"


class SuppressionAudit(models.Model):
    """One change to a suppression list made by a person (dashboard, import, command).
    Append-only; names are copied so that it still reads right after users are deleted."""

    class Action(models.TextChoices):
        ADDED = "added", "added"
        REMOVED = "removed", "removed"
        IMPORTED = "imported", "imported"

    time = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=16, choices=Action.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")
    actor_name = models.CharField(max_length=150)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")
    owner_name = models.CharField(max_length=150)
    address = models.CharField(max_length=512, db_index=True)
    reason = models.CharField(max_length=16, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)  # the entry before and/or after

    class Meta:
        ordering = ["-time", "-id"]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} <{self.address}>"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("suppression audit entries are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("suppression audit entries are append-only")
