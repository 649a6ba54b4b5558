"""What goes in and out of the API, as DRF serializers: they validate input (400 with field
errors) and, through drf-spectacular, are the OpenAPI schema of every body."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import serializers

from credentials.services import FEATURES
from events import stats
from events.forms import DEFAULT_DAYS as STATS_DEFAULT_DAYS
from events.models import Event, WebhookDelivery
from features.overrides import MAX_TAG_LENGTH, MAX_TAGS
from relay.models import Attempt, Recipient, Suppression

FEATURE_NAMES = [name for name, _, _ in FEATURES]
MACHINE_TYPES = {Event.Type.OPEN, Event.Type.CLICK}


def _text(max_length: int, **kwargs) -> serializers.CharField:
    return serializers.CharField(max_length=max_length, required=False, allow_blank=True,
                                 **kwargs)


class NoNulCharField(serializers.CharField):
    """Text that a database column and a message can hold: no NUL (PostgreSQL refuses it),
    no lone surrogate (JSON's "\\ud800" is not encodable as UTF-8)."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if "\x00" in value:
            raise serializers.ValidationError("NUL characters are not allowed.")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise serializers.ValidationError("Lone surrogates are not allowed.") from None
        return value


# -- events ---------------------------------------------------------------------------------

class EventFilter(serializers.Serializer):
    type = serializers.ChoiceField(choices=sorted(Event.Type.values), required=False)
    message = NoNulCharField(max_length=20, required=False, help_text="a queue id")
    recipient = NoNulCharField(max_length=512, required=False, help_text="an address, any case")
    login = NoNulCharField(max_length=64, required=False, help_text="a login's username")
    tag = NoNulCharField(max_length=MAX_TAG_LENGTH, required=False)
    since = serializers.DateTimeField(required=False, help_text="RFC 3339; inclusive")
    until = serializers.DateTimeField(required=False, help_text="RFC 3339; exclusive")


class EventOut(serializers.Serializer):
    id = serializers.IntegerField()
    type = serializers.ChoiceField(choices=sorted(Event.Type.values))
    time = serializers.DateTimeField()
    message = serializers.CharField(allow_null=True, help_text="the message's queue id")
    recipient = serializers.CharField(allow_null=True, help_text="the recipient's address")
    login = serializers.CharField(allow_null=True)
    tags = serializers.ListField(child=serializers.CharField())
    data = serializers.DictField(help_text="the type's fields: status, reason, url, ...")
    flags = serializers.ListField(child=serializers.CharField())
    machine = serializers.BooleanField(
        help_text="an open or click flagged as a machine's (scanner, proxy, prefetch)")


def event_out(event: Event, message=None, address: str | None = None) -> dict:
    """An event as EventOut; ``message`` and ``address`` when the caller has them at hand
    (else read from the event's loaded message and recipient)."""
    message = message if message is not None else event.message
    if address is None and event.recipient_id:
        address = event.recipient.address
    return {
        "id": event.pk, "type": event.type, "time": event.time,
        "message": message.queue_id if message is not None else None,
        "recipient": address,
        "login": message.login.username if message is not None and message.login else None,
        "tags": list(message.tags or []) if message is not None else [],
        "data": event.data or {}, "flags": list(event.flags or []),
        "machine": event.type in MACHINE_TYPES and bool(event.flags),
    }


# -- messages ---------------------------------------------------------------------------------

class MessageFilter(serializers.Serializer):
    recipient = NoNulCharField(max_length=512, required=False, help_text="part of an address")
    sender = NoNulCharField(max_length=512, required=False, help_text="part of MAIL FROM")
    subject = NoNulCharField(max_length=998, required=False, help_text="part of the subject")
    login = NoNulCharField(max_length=64, required=False, help_text="part of a username")
    tag = NoNulCharField(max_length=MAX_TAG_LENGTH, required=False)
    status = serializers.ChoiceField(
        choices=sorted(set(Recipient.State.values) - {Recipient.State.INTAKE}), required=False,
        help_text="messages with at least one recipient in this state")
    date_from = serializers.DateField(required=False, help_text="RFC 3339 full-date")
    date_to = serializers.DateField(required=False, help_text="RFC 3339 full-date, inclusive")


class StateCount(serializers.Serializer):
    state = serializers.CharField()
    count = serializers.IntegerField()


class FeaturesField(serializers.Serializer):
    clicktracking = serializers.BooleanField(required=False)
    openstracking = serializers.BooleanField(required=False)
    preventscam = serializers.BooleanField(required=False)
    bouncetracking = serializers.BooleanField(required=False)
    inlinecss = serializers.BooleanField(required=False)


class MessageOut(serializers.Serializer):
    id = serializers.CharField(help_text="the queue id")
    received_at = serializers.DateTimeField()
    mail_from = serializers.CharField(allow_blank=True, help_text='MAIL FROM as received; "" '
                                      "is the null sender")
    subject = serializers.CharField(allow_blank=True)
    login = serializers.CharField(allow_null=True)
    tags = serializers.ListField(child=serializers.CharField())
    features = serializers.DictField(child=serializers.BooleanField(),
                                     help_text="the features applied (login's, with overrides)")
    size = serializers.IntegerField()
    recipients_total = serializers.IntegerField()
    states = StateCount(many=True)


class AttemptOut(serializers.ModelSerializer):
    class Meta:
        model = Attempt
        fields = ["time", "host", "ip", "port", "tls_version", "tls_cipher", "code",
                  "enhanced", "text", "duration_ms", "outcome"]


class RecipientOut(serializers.Serializer):
    address = serializers.CharField()
    state = serializers.ChoiceField(choices=sorted(Recipient.State.values))
    mail_from_sent = serializers.CharField(
        allow_null=True, allow_blank=True,
        help_text="the envelope sender as sent (or as it will be sent) to this recipient")
    attempts = AttemptOut(many=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_response = serializers.CharField(allow_blank=True)


class EnvelopeReceived(serializers.Serializer):
    mail_from = serializers.CharField(allow_blank=True)
    rcpt_to = serializers.ListField(child=serializers.CharField())
    ret = serializers.CharField(allow_blank=True)
    envid = serializers.CharField(allow_blank=True)


class MessageDetailOut(MessageOut):
    envelope = EnvelopeReceived(help_text="as received; as sent is per recipient")
    recipients = RecipientOut(many=True, help_text="the first 100")
    events = EventOut(many=True)


# -- sending ----------------------------------------------------------------------------------

class AttachmentIn(serializers.Serializer):
    filename = NoNulCharField(max_length=255)
    content_type = serializers.RegexField(r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$",
                                          max_length=255)
    content = serializers.CharField(help_text="base64")


class TagField(NoNulCharField):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if "," in value:
            raise serializers.ValidationError("A tag cannot hold a comma.")
        return value


class SendIn(serializers.Serializer):
    login = NoNulCharField(max_length=64, help_text="the username of one of your logins; its "
                           "features apply")
    raw = NoNulCharField(required=False, trim_whitespace=False,
                         help_text="a whole RFC 5322 message (then mail_from and rcpt_to)")
    mail_from = NoNulCharField(max_length=512, required=False, allow_blank=True,
                               help_text="envelope sender; default: the from address")
    rcpt_to = serializers.ListField(child=NoNulCharField(max_length=512), required=False,
                                    help_text="envelope recipients; default: to, cc and bcc")
    to = serializers.ListField(child=NoNulCharField(max_length=998), required=False)
    cc = serializers.ListField(child=NoNulCharField(max_length=998), required=False)
    bcc = serializers.ListField(child=NoNulCharField(max_length=512), required=False)
    subject = NoNulCharField(max_length=998, required=False, allow_blank=True)
    text = NoNulCharField(required=False, allow_blank=True, trim_whitespace=False)
    html = NoNulCharField(required=False, allow_blank=True, trim_whitespace=False)
    tags = serializers.ListField(child=TagField(max_length=MAX_TAG_LENGTH), required=False,
                                 max_length=MAX_TAGS)
    headers = serializers.DictField(child=NoNulCharField(max_length=998, allow_blank=True),
                                    required=False, help_text="extra header fields, e.g. "
                                    "X-SMTPeter-TrackClicks")
    attachments = AttachmentIn(many=True, required=False)

    def validate(self, attrs):
        if "raw" in attrs:
            extra = sorted(set(attrs) & {"from", "to", "cc", "bcc", "subject", "text", "html",
                                         "tags", "headers", "attachments"})
            if extra:
                raise serializers.ValidationError(
                    {name: ["Not with raw: put it in the message."] for name in extra})
            missing = {n: ["Required with raw."] for n in ("mail_from", "rcpt_to")
                       if n not in attrs}
            if missing:
                raise serializers.ValidationError(missing)
        else:
            if "from" not in attrs:
                raise serializers.ValidationError({"from": ["Required without raw."]})
            if not (attrs.get("to") or attrs.get("cc") or attrs.get("bcc")
                    or attrs.get("rcpt_to")):
                raise serializers.ValidationError({"to": ["At least one recipient."]})
        return attrs


# "from" is a Python keyword: declared by name.
SendIn._declared_fields["from"] = NoNulCharField(
    max_length=998, required=False, help_text="the From header, e.g. Shop <shop@example.com>")


class Queued(serializers.Serializer):
    id = serializers.CharField(help_text="the queue id")
    status = serializers.CharField()


# -- logins ---------------------------------------------------------------------------------

class LoginOut(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    enabled = serializers.BooleanField()
    features = FeaturesField()
    created = serializers.DateTimeField()
    updated = serializers.DateTimeField()
    last_used = serializers.DateTimeField(allow_null=True)


class LoginWithPassword(LoginOut):
    password = serializers.CharField(help_text="shown this once; not stored")


class PasswordOut(serializers.Serializer):
    password = serializers.CharField(help_text="shown this once; not stored")


def login_out(login) -> dict:
    return {"id": login.pk, "username": login.username, "description": login.description,
            "enabled": login.enabled, "features": login.featureset(), "created": login.created,
            "updated": login.updated, "last_used": login.last_used}


class LoginIn(serializers.Serializer):
    description = NoNulCharField(max_length=200, required=False, allow_blank=True)
    features = FeaturesField(required=False)
    enabled = serializers.BooleanField(required=False)


# -- suppressions -------------------------------------------------------------------------------

class SuppressionFilter(serializers.Serializer):
    q = NoNulCharField(max_length=320, required=False, help_text="part of the address")
    reason = serializers.ChoiceField(choices=Suppression.Reason.values, required=False)
    state = serializers.ChoiceField(choices=["active", "expired", "all"], required=False,
                                    help_text="default: active")


class SuppressionOut(serializers.Serializer):
    id = serializers.IntegerField()
    address = serializers.CharField()
    reason = serializers.ChoiceField(choices=Suppression.Reason.values)
    detail = serializers.CharField(allow_blank=True)
    source = serializers.ChoiceField(choices=Suppression.Source.values)
    created = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    active = serializers.BooleanField()


class SuppressionIn(serializers.Serializer):
    address = NoNulCharField(max_length=320)
    reason = serializers.ChoiceField(choices=Suppression.Reason.values, required=False,
                                     help_text="default: manual")
    detail = NoNulCharField(max_length=1000, required=False, allow_blank=True)
    expires_at = serializers.DateTimeField(required=False, allow_null=True,
                                           help_text="RFC 3339; null or absent: the reason's "
                                           "default (manual: never)")


# -- statistics ---------------------------------------------------------------------------------

class StatsFilter(serializers.Serializer):
    start = serializers.DateField(required=False, help_text="RFC 3339 full-date (UTC day), "
                                  f"inclusive; default: {STATS_DEFAULT_DAYS} days before end")
    end = serializers.DateField(required=False, help_text="RFC 3339 full-date (UTC day), "
                                "inclusive; default: today")
    login = NoNulCharField(max_length=64, required=False, help_text="a login's username")
    tag = NoNulCharField(max_length=stats.TAG_LENGTH, required=False)
    machine = serializers.BooleanField(required=False, default=False, help_text="also count "
                                       "opens and clicks flagged as a machine's")

    def validate(self, attrs):
        end = attrs.get("end") or timezone.now().date()
        start = attrs.get("start") or end - timedelta(days=STATS_DEFAULT_DAYS - 1)
        if start > end:
            raise serializers.ValidationError({"start": ["The first day is after the last."]})
        if (end - start).days >= stats.MAX_DAYS:
            raise serializers.ValidationError({"start": [f"At most {stats.MAX_DAYS} days."]})
        return {**attrs, "start": start, "end": end, "tag": attrs.get("tag", "").strip()}


class StatsCounts(serializers.Serializer):
    sent = serializers.IntegerField(help_text="recipients of messages received that day")
    delivered = serializers.IntegerField()
    hard = serializers.IntegerField(help_text="hard failures and bounces")
    soft = serializers.IntegerField(help_text="soft failures and bounces")
    complaints = serializers.IntegerField()
    opened = serializers.IntegerField()
    clicked = serializers.IntegerField()


class StatsDay(StatsCounts):
    day = serializers.DateField()


class StatsTotals(StatsCounts):
    unique_opened = serializers.IntegerField(help_text="recipients who opened")
    unique_clicked = serializers.IntegerField(help_text="recipients who clicked")


class StatsLink(serializers.Serializer):
    url = serializers.CharField()
    clicks = serializers.IntegerField()


class StatsOut(serializers.Serializer):
    start = serializers.DateField()
    end = serializers.DateField()
    login = serializers.CharField(allow_null=True)
    tag = serializers.CharField(allow_blank=True)
    machine = serializers.BooleanField()
    days = StatsDay(many=True, help_text="every day of the range, oldest first")
    totals = StatsTotals()
    links = StatsLink(many=True, help_text="the most clicked links, most first (at most 10)")


# -- webhooks -----------------------------------------------------------------------------------

EVENT_TYPE_NAMES = sorted(Event.Type.values)


class WebhookIn(serializers.Serializer):
    url = NoNulCharField(max_length=2000, required=False,
                         help_text="https:// URL that gets a signed POST per event")
    description = NoNulCharField(max_length=200, required=False, allow_blank=True)
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPE_NAMES), required=False, min_length=1,
        max_length=len(EVENT_TYPE_NAMES))
    enabled = serializers.BooleanField(required=False)


class WebhookCreateIn(WebhookIn):
    url = NoNulCharField(max_length=2000, help_text="https:// URL that gets a signed POST per "
                         "event")
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPE_NAMES), min_length=1,
        max_length=len(EVENT_TYPE_NAMES))


class WebhookOut(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_TYPE_NAMES))
    enabled = serializers.BooleanField()
    disabled_reason = serializers.CharField(allow_blank=True, help_text="why it was disabled")
    disabled_at = serializers.DateTimeField(allow_null=True)
    failing_since = serializers.DateTimeField(allow_null=True, help_text="the first failed POST "
                                              "since the last success")
    created = serializers.DateTimeField()


class WebhookWithSecret(WebhookOut):
    secret = serializers.CharField(help_text="the signing secret (whsec_…), shown this once")


def webhook_out(endpoint) -> dict:
    return {"id": endpoint.pk, "url": endpoint.url, "description": endpoint.description,
            "event_types": list(endpoint.event_types), "enabled": endpoint.enabled,
            "disabled_reason": endpoint.disabled_reason, "disabled_at": endpoint.disabled_at,
            "failing_since": endpoint.failing_since, "created": endpoint.created}


class WebhookAttemptOut(serializers.Serializer):
    id = serializers.IntegerField()
    time = serializers.DateTimeField()
    delivery = serializers.IntegerField(help_text="the outbox row: one per event and endpoint")
    webhook_id = serializers.CharField(help_text="the webhook-id header (the same on retries)")
    event = serializers.IntegerField(allow_null=True, help_text="the event's id; null: a test")
    type = serializers.CharField(help_text="the event type, or test")
    status = serializers.IntegerField(allow_null=True, help_text="HTTP status; null: no answer")
    error = serializers.CharField(allow_blank=True)
    duration_ms = serializers.IntegerField()
    response = serializers.CharField(allow_blank=True, help_text="the response body's start")
    state = serializers.ChoiceField(choices=WebhookDelivery.State.values,
                                    help_text="the outbox row's state now")


class WebhookTestOut(serializers.Serializer):
    delivery = serializers.IntegerField()
    webhook_id = serializers.CharField()
    status = serializers.CharField()


# -- sender domains -----------------------------------------------------------------------------

class DomainIn(serializers.Serializer):
    domain = NoNulCharField(max_length=253, help_text="e.g. shop.example.com")
    ed25519 = serializers.BooleanField(required=False, default=False,
                                       help_text="also an Ed25519 key (a second signature)")


class DomainRecordOut(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["dkim", "spf", "dmarc"])
    name = serializers.CharField(help_text="where to publish it")
    type = serializers.CharField(help_text="the DNS record type")
    value = serializers.CharField(help_text="dkim: the TXT value to publish; spf: the mechanism "
                                  "to include in your SPF record; dmarc: a suggestion")
    example = serializers.CharField(help_text="a whole TXT value to publish (spf: with the "
                                    "mechanism, if you have no SPF record yet)")
    selector = serializers.CharField(allow_blank=True)
    algorithm = serializers.CharField(allow_blank=True)
    key_state = serializers.CharField(allow_blank=True, help_text="dkim: next, active or "
                                      "retiring")
    status = serializers.ChoiceField(choices=["right", "missing", "wrong", "error",
                                              "unchecked"],
                                     help_text="what the last check found")
    found = serializers.ListField(child=serializers.CharField())
    note = serializers.CharField(allow_blank=True)


class DomainOut(serializers.Serializer):
    id = serializers.IntegerField()
    domain = serializers.CharField()
    verified = serializers.BooleanField(help_text="its mail is signed with its own keys")
    verified_at = serializers.DateTimeField(allow_null=True)
    lapsed_at = serializers.DateTimeField(allow_null=True)
    checked_at = serializers.DateTimeField(allow_null=True)
    created = serializers.DateTimeField()
    records = DomainRecordOut(many=True, help_text="only public key material")


def domain_out(domain, records: list[dict]) -> dict:
    rows = []
    for r in records:
        want, found, key = r["want"], r["found"] or {}, r["key"]
        rows.append({"kind": want.kind, "name": want.name, "type": "TXT", "value": want.value,
                     "example": (f"v=spf1 {want.value} ~all" if want.kind == "spf"
                                 else want.value),
                     "selector": want.selector, "algorithm": key.algorithm if key else "",
                     "key_state": key.state if key else "",
                     "status": found.get("status", "unchecked"),
                     "found": list(found.get("found", [])), "note": found.get("note", "")})
    return {"id": domain.pk, "domain": domain.domain, "verified": domain.verified_at is not None,
            "verified_at": domain.verified_at, "lapsed_at": domain.lapsed_at,
            "checked_at": domain.checked_at, "created": domain.created_at, "records": rows}


class ErrorOut(serializers.Serializer):
    detail = serializers.CharField()
