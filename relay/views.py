"""Dashboard pages of the queue: Messages (search), a message's page, its raw source and its
HTML as delivered (sandboxed), the Outbox of capture mode, and the staff actions.

Every message is looked up through services.visible_message: another customer's message is
"not found", exactly like one that does not exist. The staff actions are "not found" for
everyone else and go through relay.queue, which writes their audit entry.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from credentials.services import FEATURES
from credentials.views import staff_only
from events.models import Event

from . import queue, services
from .forms import BounceSearchForm, MessageSearchForm
from .models import Message, Recipient

log = logging.getLogger("relay.views")
PAGE_SIZE = 50
# The HTML of a message runs nothing and loads nothing: no script, no image, no font, no
# frame, no form; inline styles only, as mail clients show them. The sandbox gives it an
# origin of its own, so it cannot read the dashboard either; a link with target="_blank"
# opens a tab of its own (the only way out is a person clicking).
HTML_POLICY = ("sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; "
               "img-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
               "form-action 'none'; frame-ancestors 'self'")
# A download is never shown as a page; should a browser try, it runs nothing.
DOWNLOAD_POLICY = "sandbox; default-src 'none'"


def _message_or_404(request: HttpRequest, queue_id: str) -> Message:
    message = services.visible_message(request.user, queue_id)
    if message is None:
        raise Http404("no such message")
    return message


def _recipient_or_404(request: HttpRequest, message: Message) -> Recipient | None:
    """The recipient named by ?recipient= (one of this message's), or the default one."""
    chosen = request.GET.get("recipient", "")
    if not chosen:
        return services.default_recipient(message)
    if not (chosen.isascii() and chosen.isdigit() and len(chosen) <= 18):
        raise Http404("no such recipient")
    recipient = message.recipients.filter(pk=int(chosen)).first()
    if recipient is None:
        raise Http404("no such recipient")
    return recipient


def _page(request: HttpRequest, items) -> tuple:
    page = Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    return page, params.urlencode()


@require_GET
def message_list(request: HttpRequest) -> HttpResponse:
    form = MessageSearchForm(request.GET, staff=request.user.is_staff)
    if form.is_valid():
        found = services.search(request.user, form.criteria())
        status = 200
    else:
        found, status = Message.objects.none(), 400
    page, query = _page(request, found)
    rows = list(page.object_list)
    summaries = services.summaries([m.pk for m in rows])
    context = {
        "form": form,
        "filtered": form.is_valid() and any(
            v not in (None, "") for v in form.cleaned_data.values()),
        "page": page,
        "query": query,
        "rows": [(m, summaries[m.pk]) for m in rows],
    }
    return render(request, "relay/messages.html", context, status=status)


@require_GET
def message_page(request: HttpRequest, queue_id: str) -> HttpResponse:
    message = _message_or_404(request, queue_id)
    shown = _recipient_or_404(request, message)
    search = request.GET.get("rcpt", "").strip()[:200]
    detail = services.detail(message, search)
    delivered = services.as_delivered(message, shown)
    body = services.body_of(delivered.data)
    features = [(name, label, bool((message.features or {}).get(name)))
                for name, label, _ in FEATURES]
    senders = {v.sent_from for v in detail.recipients if v.sent_from is not None}
    context = {
        "msg": message,
        "detail": detail,
        "features": features,
        "single_sender": senders.pop() if len(senders) == 1 else None,
        "shown": shown,
        "delivered": delivered,
        "has_html": body.html is not None,
        "text": body.text if body.html is None else None,
        "rcpt_search": search,
        "actions": services.action_allowed(message) if request.user.is_staff else {},
    }
    return render(request, "relay/message.html", context)


@never_cache
@require_GET
def message_raw(request: HttpRequest, queue_id: str) -> HttpResponse:
    """The message as received (or ?recipient=: that recipient's captured copy), to download.
    Intake mail is also its original's owner's to read (the raw report of a bounce)."""
    message = services.raw_message(request.user, queue_id)
    if message is None:
        raise Http404("no such message")
    filename = f"{message.queue_id}.eml"
    data = bytes(message.raw)
    if request.GET.get("recipient"):
        recipient = _recipient_or_404(request, message)
        delivered = services.as_delivered(message, recipient)
        if delivered.source != "captured":
            raise Http404("no captured copy")
        data, filename = delivered.data, f"{message.queue_id}-{recipient.pk}.eml"
    response = HttpResponse(data, content_type="message/rfc822")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Content-Security-Policy"] = DOWNLOAD_POLICY
    return response


@never_cache
@xframe_options_sameorigin
@require_GET
def message_html(request: HttpRequest, queue_id: str) -> HttpResponse:
    """The HTML part as delivered, for the sandboxed iframe on the message page."""
    message = _message_or_404(request, queue_id)
    recipient = _recipient_or_404(request, message)
    body = services.body_of(services.as_delivered(message, recipient).data)
    if body.html is None:
        raise Http404("no HTML part")
    response = HttpResponse(body.html, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = HTML_POLICY
    response["Referrer-Policy"] = "no-referrer"
    return response


@require_GET
def outbox(request: HttpRequest) -> HttpResponse:
    page, query = _page(request, services.outbox(request.user))
    context = {"page": page, "query": query, "capturing": settings.DELIVERY_MODE == "capture"}
    return render(request, "relay/outbox.html", context)


@staff_only
@require_GET
def queue_page(request: HttpRequest) -> HttpResponse:
    """The queue at a glance, for staff: depth by state, the oldest pending message,
    deliveries per minute, the top deferral reasons of the last hour by destination."""
    glance = services.glance()
    return render(request, "relay/queue.html", {
        "glance": glance, "states": [(s, glance.depth.get(s, 0)) for s in services.GLANCE_STATES],
    })


# -- staff actions ------------------------------------------------------------------------------

ACTIONS = {
    "retry": (queue.retry_now, "Its queued and deferred recipients are due now"),
    "hold": (queue.hold, "Its queued and deferred recipients are held"),
    "release": (queue.release, "Its held recipients are due again"),
}


@staff_only
@require_POST
def message_action(request: HttpRequest, queue_id: str, action: str) -> HttpResponse:
    message = _message_or_404(request, queue_id)
    act, done = ACTIONS[action]
    try:
        entry = act(message.queue_id, actor=request.user)
    except LookupError:  # deleted meanwhile
        raise Http404("no such message") from None
    if entry is None:
        messages.info(request, f"Nothing to do: message {message.queue_id} has no recipient "
                               f"that {action} applies to.")
    else:
        messages.success(request, f"{done}: {', '.join(entry.recipients)}.")
    return redirect("message", queue_id=message.queue_id)


@staff_only
@require_http_methods(["GET", "POST"])
def message_delete(request: HttpRequest, queue_id: str) -> HttpResponse:
    message = _message_or_404(request, queue_id)
    if not services.action_allowed(message)["delete"]:
        # Delivered and failed mail is the record of what happened: `mailq --delete` can
        # still remove it; the dashboard deletes only mail that has not gone out yet.
        messages.error(request, f"Message {message.queue_id} has no queued, deferred or held "
                                "recipient: it is kept as the record of what happened.")
        return redirect("message", queue_id=message.queue_id)
    if request.method == "POST":
        try:
            queue.delete(message.queue_id, actor=request.user)
        except LookupError:
            raise Http404("no such message") from None
        messages.success(request, f"Message {message.queue_id} deleted.")
        return redirect("messages")
    return render(request, "relay/message_delete.html", {"msg": message})


@require_GET
def bounce_list(request: HttpRequest) -> HttpResponse:
    """Recent bounces and complaints of the user's messages (staff: everyone's)."""
    form = BounceSearchForm(request.GET)
    if form.is_valid():
        data = {k: v.strip() for k, v in form.cleaned_data.items()}
        found, status = services.bounces(request.user, **data), 200
    else:
        found, status = Event.objects.none(), 400
    page, query = _page(request, found)
    context = {"form": form, "page": page, "query": query, "rows": list(page.object_list),
               "filtered": form.is_valid() and any(form.cleaned_data.values())}
    return render(request, "relay/bounces.html", context, status=status)
