"""The API's endpoints: thin viewsets over credentials.services, credentials.apikeys,
relay.services, relay.suppression, relay.http_submission, events.services, events.stats,
events.webhooks and senders.services.

Every read starts from the key's owner: another owner's id is 404, like a missing one. Every
change is audited by the service it goes through, with the key named (through_key).
"""
from __future__ import annotations

import contextlib

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpResponse, JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, renderers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from credentials import services as logins
from credentials.clientip import client_ip
from events import services as events
from events import stats, webhooks
from relay import http_submission, suppression
from relay import services as relay
from relay.models import Suppression
from senders import services as senders

from . import serializers as s
from .errors import TooLarge

ERRORS = {400: OpenApiResponse(description="field errors"),
          401: s.ErrorOut, 403: s.ErrorOut, 404: s.ErrorOut, 429: s.ErrorOut}


def _filters(serializer_class, request) -> dict:
    form = serializer_class(data=request.query_params)
    form.is_valid(raise_exception=True)
    return form.validated_data


@contextlib.contextmanager
def _as_key(request):
    """Audit entries written inside name the key the request came with."""
    with logins.through_key(request.auth.pk, request.auth.name):
        yield


class _Base(viewsets.GenericViewSet):
    def _page(self, rows: QuerySet, out) -> Response:
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(out(page))


# -- events -----------------------------------------------------------------------------------

class EventViewSet(_Base):
    serializer_class = s.EventOut

    @extend_schema(parameters=[s.EventFilter], responses={200: s.EventOut(many=True), **ERRORS})
    def list(self, request):
        """Events of your messages, newest first."""
        f = _filters(s.EventFilter, request)
        rows = events.search(request.user.pk, type=f.get("type", ""),
                             queue_id=f.get("message", ""), recipient=f.get("recipient", ""),
                             login=f.get("login", ""), tag=f.get("tag", ""),
                             since=f.get("since"), until=f.get("until"))
        return self._page(rows, lambda page: s.EventOut([s.event_out(e) for e in page],
                                                        many=True).data)


# -- messages ---------------------------------------------------------------------------------

class RFC822Renderer(renderers.BaseRenderer):
    media_type = "message/rfc822"
    format = "eml"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, bytes | bytearray):
            return bytes(data)
        return renderers.JSONRenderer().render(data)  # an error's {"detail": ...}


def _message_out(m, summary) -> dict:
    return {"id": m.queue_id, "received_at": m.received_at, "mail_from": m.mail_from,
            "subject": m.subject, "login": m.login.username if m.login else None,
            "tags": list(m.tags or []), "features": dict(m.features or {}), "size": m.size,
            "recipients_total": summary.total,
            "states": [{"state": st, "count": n} for st, n in summary.states]}


class MessageViewSet(_Base):
    serializer_class = s.MessageOut
    lookup_field = "queue_id"
    lookup_value_regex = "[0-9A-Za-z]{1,20}"

    @staticmethod
    def max_body() -> int:
        # The largest message SMTP takes, as base64 in JSON, and room for the other fields.
        return settings.SMTP_MAX_MESSAGE_SIZE * 4 // 3 + 1024 * 1024

    def _own(self, request, queue_id: str):
        message = relay.visible_message(request.user, queue_id, own=True)
        if message is None or message.kind != message.Kind.SUBMISSION:
            raise exceptions.NotFound("No such message.")
        return message

    @extend_schema(parameters=[s.MessageFilter],
                   responses={200: s.MessageOut(many=True), **ERRORS})
    def list(self, request):
        """Your messages, newest first."""
        f = _filters(s.MessageFilter, request)
        criteria = relay.Criteria(**{k: v for k, v in f.items()})
        rows = relay.search(request.user, criteria, own=True)

        def out(page):
            summaries = relay.summaries([m.pk for m in page])
            return s.MessageOut([_message_out(m, summaries[m.pk]) for m in page],
                                many=True).data
        return self._page(rows, out)

    @extend_schema(responses={200: s.MessageDetailOut, **ERRORS})
    def retrieve(self, request, queue_id: str):
        """One message: envelope as received and as sent, features applied, tags,
        recipients with state and attempts, events."""
        message = self._own(request, queue_id)
        d = relay.detail(message)
        summary = relay.Summary(total=d.recipients_total, states=d.states)
        rcpt = [v.recipient for v in d.recipients]
        address = {r.pk: r.address for r in rcpt}
        body = {
            **_message_out(message, summary),
            "envelope": {"mail_from": message.mail_from,
                         "rcpt_to": list(message.recipients.order_by("id")
                                         .values_list("address", flat=True)[:1000]),
                         "ret": message.ret, "envid": message.envid},
            "recipients": [{"address": v.recipient.address, "state": v.recipient.state,
                            "mail_from_sent": v.sent_from, "attempts": v.attempts,
                            "next_attempt_at": v.recipient.next_attempt_at,
                            "last_response": v.recipient.last_response}
                           for v in d.recipients],
            "events": [s.event_out(e.event, message, address.get(e.event.recipient_id))
                       for e in d.timeline if e.event is not None],
        }
        return Response(s.MessageDetailOut(body).data)

    @extend_schema(responses={(200, "message/rfc822"): OpenApiTypes.BINARY, **ERRORS})
    def raw(self, request, queue_id: str):
        """The message as received (with our Received header), as message/rfc822."""
        message = relay.raw_message(request.user, queue_id, own=True)
        if message is None or message.kind != message.Kind.SUBMISSION:
            raise exceptions.NotFound("No such message.")
        response = HttpResponse(bytes(message.raw), content_type="message/rfc822")
        response["Content-Disposition"] = f'attachment; filename="{message.queue_id}.eml"'
        return response

    @extend_schema(request=s.SendIn, responses={202: s.Queued, 413: s.ErrorOut, **ERRORS})
    def create(self, request):
        """Send a message with one of your logins: a raw RFC 5322 message plus envelope, or
        fields. 202 once it is committed to the queue (the promise of SMTP's 250)."""
        form = s.SendIn(data=request.data)
        form.is_valid(raise_exception=True)
        v = form.validated_data
        login = logins.own_login(request.user, v["login"])
        if login is None or not login.enabled:
            raise exceptions.ValidationError({"login": ["No enabled login of yours has this "
                                                        "username."]})
        try:
            if "raw" in v:
                data = v["raw"].encode("utf-8")
                mail_from, rcpt = v["mail_from"], v["rcpt_to"]
            else:
                fields = http_submission.Fields(
                    sender=v["from"], to=v.get("to", []), cc=v.get("cc", []),
                    bcc=v.get("bcc", []), subject=v.get("subject", ""),
                    text=v.get("text", ""), html=v.get("html", ""), tags=v.get("tags", []),
                    headers=v.get("headers", {}),
                    attachments=[http_submission.Attachment(a["filename"], a["content_type"],
                                                            a["content"])
                                 for a in v.get("attachments", [])])
                data = http_submission.build(fields)
                mail_from = v.get("mail_from", http_submission.first_address(fields.sender))
                rcpt = v.get("rcpt_to") or http_submission.addresses(
                    [*fields.to, *fields.cc, *fields.bcc])
            queue_id = http_submission.submit(login, mail_from, rcpt, data,
                                              client_ip=client_ip(request),
                                              secure=request.is_secure())
        except http_submission.Refused as exc:
            if exc.status == 413:
                raise TooLarge(exc.reason) from None
            raise exceptions.ValidationError({exc.field: [exc.reason]}) from None
        response = Response({"id": queue_id, "status": "queued"},
                            status=status.HTTP_202_ACCEPTED)
        response["Location"] = f"{request.path.rstrip('/')}/{queue_id}/"
        return response


# -- logins -----------------------------------------------------------------------------------

class LoginViewSet(_Base):
    serializer_class = s.LoginOut
    lookup_value_regex = "[0-9]{1,18}"

    def _own(self, request, pk: str):
        login = logins.own_login_by_id(request.user, int(pk))
        if login is None:
            raise exceptions.NotFound("No such login.")
        return login

    @extend_schema(responses={200: s.LoginOut(many=True), **ERRORS})
    def list(self, request):
        """Your SMTP logins."""
        return self._page(logins.logins_of(request.user).order_by("-id"),
                          lambda page: s.LoginOut([s.login_out(x) for x in page],
                                                  many=True).data)

    @extend_schema(responses={200: s.LoginOut, **ERRORS})
    def retrieve(self, request, pk: str):
        return Response(s.LoginOut(s.login_out(self._own(request, pk))).data)

    @extend_schema(request=s.LoginIn, responses={201: s.LoginWithPassword, **ERRORS})
    def create(self, request):
        """A new login; its password is in this response only."""
        form = s.LoginIn(data=request.data)
        form.is_valid(raise_exception=True)
        v = form.validated_data
        on = [name for name, value in v.get("features", {}).items() if value]
        with _as_key(request):
            login, password = logins.create_login(
                request.user, features=on, description=v.get("description", ""),
                actor=request.user, ip=client_ip(request))
            if v.get("enabled") is False:
                logins.set_enabled(login, False, actor=request.user, ip=client_ip(request))
                login.refresh_from_db()
        body = {**s.login_out(login), "password": password}
        return Response(s.LoginWithPassword(body).data, status=status.HTTP_201_CREATED)

    def _update(self, request, pk: str):
        login = self._own(request, pk)
        form = s.LoginIn(data=request.data)
        form.is_valid(raise_exception=True)
        v = form.validated_data
        ip = client_ip(request)
        try:
            with _as_key(request):
                logins.update_login(login, actor=request.user, ip=ip,
                                    description=v.get("description"),
                                    features=v.get("features"))
                if "enabled" in v:
                    logins.set_enabled(login, v["enabled"], actor=request.user, ip=ip)
        except logins.Login.DoesNotExist:
            raise exceptions.NotFound("No such login.") from None
        login.refresh_from_db()
        return Response(s.LoginOut(s.login_out(login)).data)

    @extend_schema(request=s.LoginIn, responses={200: s.LoginOut, **ERRORS})
    def partial_update(self, request, pk: str):
        """Change description, features (those given) and enabled."""
        return self._update(request, pk)

    @extend_schema(request=s.LoginIn, responses={200: s.LoginOut, **ERRORS})
    def update(self, request, pk: str):
        """As PATCH: fields not given stay as they are."""
        return self._update(request, pk)

    @extend_schema(request=None, responses={204: None, **ERRORS})
    def destroy(self, request, pk: str):
        login = self._own(request, pk)
        with _as_key(request):
            if not logins.delete_login(login, actor=request.user, ip=client_ip(request)):
                raise exceptions.NotFound("No such login.")
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: s.PasswordOut, **ERRORS})
    @action(detail=True, methods=["post"], url_path="reset-password")
    def reset_password(self, request, pk: str):
        """A new generated password, in this response only; the old one stops working."""
        login = self._own(request, pk)
        try:
            with _as_key(request):
                password = logins.reset_password(login, actor=request.user,
                                                 ip=client_ip(request))
        except logins.Login.DoesNotExist:
            raise exceptions.NotFound("No such login.") from None
        return Response(s.PasswordOut({"password": password}).data)


# -- suppressions -------------------------------------------------------------------------------

def _suppression_out(entry: Suppression) -> dict:
    return {"id": entry.pk, "address": entry.address, "reason": entry.reason,
            "detail": entry.detail, "source": entry.source, "created": entry.created,
            "expires_at": entry.expires_at, "active": suppression.is_active(entry)}


class SuppressionViewSet(_Base):
    serializer_class = s.SuppressionOut
    lookup_value_regex = "[0-9]{1,18}"

    def _own(self, request, pk: str) -> Suppression:
        entry = suppression.entry(request.user.pk, int(pk))
        if entry is None:
            raise exceptions.NotFound("No such entry.")
        return entry

    @extend_schema(parameters=[s.SuppressionFilter],
                   responses={200: s.SuppressionOut(many=True), **ERRORS})
    def list(self, request):
        """Your suppression list (active entries unless state says otherwise)."""
        f = _filters(s.SuppressionFilter, request)
        rows = suppression.search(request.user.pk, f.get("q", ""), f.get("reason", ""),
                                  f.get("state", "active"))
        return self._page(rows, lambda page: s.SuppressionOut(
            [_suppression_out(e) for e in page], many=True).data)

    @extend_schema(responses={200: s.SuppressionOut, **ERRORS})
    def retrieve(self, request, pk: str):
        return Response(s.SuppressionOut(_suppression_out(self._own(request, pk))).data)

    @extend_schema(request=s.SuppressionIn, responses={201: s.SuppressionOut, **ERRORS})
    def create(self, request):
        """Add an address (or refresh its entry); audited with the key."""
        form = s.SuppressionIn(data=request.data)
        form.is_valid(raise_exception=True)
        v = form.validated_data
        extra = {"expires_at": v["expires_at"]} if "expires_at" in v else {}
        try:
            with _as_key(request):
                entry = suppression.add(
                    request.user.pk, v["address"], v.get("reason", Suppression.Reason.MANUAL),
                    detail=v.get("detail", ""), source=Suppression.Source.API,
                    actor=request.user, ip=client_ip(request), **extra)
        except ValueError as exc:
            raise exceptions.ValidationError({"address": [str(exc)]}) from None
        return Response(s.SuppressionOut(_suppression_out(entry)).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None, **ERRORS})
    def destroy(self, request, pk: str):
        """Take the entry off the list; audited with the key."""
        entry = self._own(request, pk)
        with _as_key(request):
            suppression.remove(request.user.pk, entry.address, actor=request.user,
                               ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


# -- statistics -------------------------------------------------------------------------------

class StatsViewSet(_Base):
    serializer_class = s.StatsOut
    pagination_class = None

    @extend_schema(parameters=[s.StatsFilter], responses={200: s.StatsOut, **ERRORS})
    def report(self, request):
        """Your mail per UTC day from start to end: sent, delivered, bounced hard and soft,
        complaints, opened, clicked; totals with unique opens and clicks; the most clicked
        links. Of one login and/or one tag if asked; machine opens and clicks only with
        machine=true."""
        f = _filters(s.StatsFilter, request)
        login = None
        if f.get("login"):
            login = logins.own_login(request.user, f["login"])
            if login is None:
                raise exceptions.ValidationError({"login": ["No login of yours has this "
                                                            "username."]})
        q = stats.Query(request.user.pk, f["start"], f["end"],
                        login_id=login.pk if login else None, tag=f["tag"],
                        machine=f["machine"])
        got = stats.report(q)
        body = {"start": q.start, "end": q.end, "login": login.username if login else None,
                "tag": q.tag, "machine": q.machine, **got}
        return Response(s.StatsOut(body).data)


# -- webhooks ---------------------------------------------------------------------------------

class WebhookViewSet(_Base):
    serializer_class = s.WebhookOut
    lookup_value_regex = "[0-9]{1,18}"

    def _own(self, request, pk: str):
        endpoint = webhooks.endpoint_of(request.user, int(pk))
        if endpoint is None:
            raise exceptions.NotFound("No such webhook endpoint.")
        return endpoint

    @extend_schema(responses={200: s.WebhookOut(many=True), **ERRORS})
    def list(self, request):
        """Your webhook endpoints."""
        return self._page(webhooks.endpoints_of(request.user),
                          lambda page: s.WebhookOut([s.webhook_out(e) for e in page],
                                                    many=True).data)

    @extend_schema(responses={200: s.WebhookOut, **ERRORS})
    def retrieve(self, request, pk: str):
        return Response(s.WebhookOut(s.webhook_out(self._own(request, pk))).data)

    @extend_schema(request=s.WebhookCreateIn, responses={201: s.WebhookWithSecret, **ERRORS})
    def create(self, request):
        """A new endpoint (enabled unless enabled is false); its signing secret is in this
        response only."""
        form = s.WebhookCreateIn(data=request.data)
        form.is_valid(raise_exception=True)
        v = form.validated_data
        ip = client_ip(request)
        try:
            with _as_key(request):
                endpoint, secret = webhooks.create_endpoint(
                    request.user, v["url"].strip(), v["event_types"], v.get("description", ""),
                    actor=request.user, ip=ip)
                if v.get("enabled") is False:
                    webhooks.set_enabled(endpoint, False, actor=request.user, ip=ip)
        except ValueError as exc:
            raise exceptions.ValidationError({"url": [str(exc)]}) from None
        body = {**s.webhook_out(endpoint), "secret": secret}
        return Response(s.WebhookWithSecret(body).data, status=status.HTTP_201_CREATED)

    def _update(self, request, pk: str):
        endpoint = self._own(request, pk)
        form = s.WebhookIn(data=request.data)
        form.is_valid(raise_exception=True)
        v = form.validated_data
        ip = client_ip(request)
        try:
            with _as_key(request):
                webhooks.update_endpoint(
                    endpoint, url=v.get("url", endpoint.url).strip(),
                    event_types=v.get("event_types", endpoint.event_types),
                    description=v.get("description", endpoint.description),
                    actor=request.user, ip=ip)
                if "enabled" in v and v["enabled"] != endpoint.enabled:
                    webhooks.set_enabled(endpoint, v["enabled"], actor=request.user, ip=ip)
        except ValueError as exc:
            raise exceptions.ValidationError({"url": [str(exc)]}) from None
        return Response(s.WebhookOut(s.webhook_out(endpoint)).data)

    @extend_schema(request=s.WebhookIn, responses={200: s.WebhookOut, **ERRORS})
    def partial_update(self, request, pk: str):
        """Change url, description, event_types (those given) and enabled (enabling again
        sends what waited at once)."""
        return self._update(request, pk)

    @extend_schema(request=s.WebhookIn, responses={200: s.WebhookOut, **ERRORS})
    def update(self, request, pk: str):
        """As PATCH: fields not given stay as they are."""
        return self._update(request, pk)

    @extend_schema(request=None, responses={204: None, **ERRORS})
    def destroy(self, request, pk: str):
        """Delete the endpoint with its pending POSTs and its delivery log."""
        endpoint = self._own(request, pk)
        with _as_key(request):
            webhooks.delete_endpoint(endpoint, actor=request.user, ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={200: s.WebhookAttemptOut(many=True), **ERRORS})
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk: str):
        """The endpoint's delivery log: every POST, newest first, with its HTTP status (or
        error), response time and the start of the response body."""
        endpoint = self._own(request, pk)

        def out(page):
            return s.WebhookAttemptOut([{
                "id": a.pk, "time": a.time, "delivery": a.delivery_id,
                "webhook_id": webhooks.webhook_id(a.delivery_id),
                "event": a.delivery.event_id, "type": webhooks.attempt_event_type(a),
                "status": a.status, "error": a.error, "duration_ms": a.duration_ms,
                "response": a.response_excerpt, "state": a.delivery.state} for a in page],
                many=True).data
        return self._page(webhooks.attempts_of(endpoint), out)

    @extend_schema(request=None, responses={202: s.WebhookTestOut, **ERRORS})
    @action(detail=True, methods=["post"])
    def test(self, request, pk: str):
        """Queue a test event for this endpoint (whatever its event types; a disabled
        endpoint gets it once enabled)."""
        endpoint = self._own(request, pk)
        with _as_key(request):
            row = webhooks.send_test(endpoint, actor=request.user, ip=client_ip(request))
        body = {"delivery": row.pk, "webhook_id": webhooks.webhook_id(row.pk),
                "status": "queued"}
        return Response(s.WebhookTestOut(body).data, status=status.HTTP_202_ACCEPTED)


# -- sender domains ---------------------------------------------------------------------------

def _domain_out(domain) -> dict:
    return s.DomainOut(s.domain_out(domain, senders.records(domain))).data


class DomainViewSet(_Base):
    serializer_class = s.DomainOut
    lookup_value_regex = "[0-9]{1,18}"

    def _own(self, request, pk: str):
        domain = senders.own_domain(request.user, int(pk))
        if domain is None:
            raise exceptions.NotFound("No such sender domain.")
        return domain

    @extend_schema(responses={200: s.DomainOut(many=True), **ERRORS})
    def list(self, request):
        """Your sender domains with the records to publish and their status."""
        return self._page(senders.domains_of(request.user),
                          lambda page: [_domain_out(d) for d in page])

    @extend_schema(responses={200: s.DomainOut, **ERRORS})
    def retrieve(self, request, pk: str):
        """One domain: each record to publish, with what the last check found."""
        return Response(_domain_out(self._own(request, pk)))

    @extend_schema(request=s.DomainIn, responses={201: s.DomainOut, **ERRORS})
    def create(self, request):
        """Add a domain: its DKIM key(s) are made now, and the answer holds the records to
        publish (DKIM, SPF, DMARC). Then check it."""
        form = s.DomainIn(data=request.data)
        form.is_valid(raise_exception=True)
        v = form.validated_data
        try:
            with _as_key(request):
                domain = senders.add_domain(request.user, v["domain"], ed25519=v["ed25519"],
                                            actor=request.user, ip=client_ip(request))
        except senders.DomainError as exc:
            raise exceptions.ValidationError({"domain": [str(exc)]}) from None
        return Response(_domain_out(domain), status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None, **ERRORS})
    def destroy(self, request, pk: str):
        """Delete the domain and its keys: its mail is no longer signed with them."""
        domain = self._own(request, pk)
        with _as_key(request):
            senders.delete_domain(domain, actor=request.user, ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: s.DomainOut, **ERRORS})
    @action(detail=True, methods=["post"])
    def check(self, request, pk: str):
        """Check DNS: look the records up now; the domain is verified while its active DKIM
        records are right (a waiting rotation's key becomes active once its record is)."""
        domain = self._own(request, pk)
        with _as_key(request):
            senders.check_domain(domain, actor=request.user, ip=client_ip(request))
        return Response(_domain_out(domain))

    @extend_schema(request=None, responses={200: s.DomainOut, **ERRORS})
    @action(detail=True, methods=["post"])
    def rotate(self, request, pk: str):
        """Start a key rotation: a next key (new selector) per algorithm, unless one waits
        already. Publish its record, then check: it signs once found, and the old key's
        record is needed for SENDER_ROTATION_GRACE_DAYS more."""
        domain = self._own(request, pk)
        with _as_key(request):
            senders.rotate(domain, actor=request.user, ip=client_ip(request))
        return Response(_domain_out(domain))


def not_found(request, *args, **kwargs) -> JsonResponse:
    """Any other path under /api/: JSON, not the dashboard's HTML page."""
    return JsonResponse({"detail": "Not found."}, status=404)
