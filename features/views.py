"""Click and open endpoints (signed tokens, 302 or a 1x1 GIF) and the dashboard preview page.

The tracking views record their click and open Events through events.services.record_fast().
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods

from credentials.clientip import client_ip
from credentials.services import owns_login
from events.models import Event
from events.services import record_fast

from . import preview as preview_service
from .links import CLICK, OPEN
from .machine import machine_flags
from .services import delivery_of, link_for, tracking_key
from .tokens import CLICK as CLICK_KIND
from .tokens import OPEN as OPEN_KIND
from .tokens import read_token, url_matches

log = logging.getLogger(__name__)

# The smallest transparent GIF (43 bytes).
PIXEL_GIF = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)


class _Redirect(HttpResponseRedirect):
    allowed_schemes = ["http", "https"]


def _track(request: HttpRequest, token: str, kind: str) -> str:
    key, token_kind = tracking_key(), CLICK_KIND if kind == CLICK else OPEN_KIND
    ids = read_token(key, token_kind, token)
    if ids is None:
        log.info("tracking %s: bad token from %s", kind, client_ip(request))
        raise Http404("unknown link")
    message_id, recipient_id, index, check = ids
    url = link_for(message_id, kind, index)
    if url is not None and not url_matches(key, url, check):
        log.warning("tracking %s: message=%s index=%s no longer derives the URL it was sent "
                    "with", kind, message_id, index)
        url = None
    found = None if url is None else delivery_of(message_id, recipient_id)
    if found is None:
        log.info("tracking %s: no such link message=%s recipient=%s index=%s",
                 kind, message_id, recipient_id, index)
        raise Http404("unknown link")
    delivered = found[0]
    user_agent = request.META.get("HTTP_USER_AGENT", "")[:512]
    now = timezone.now()
    flags = machine_flags(request.method, user_agent, delivered, now,
                          settings.TRACKING_FAST_SECONDS)
    try:
        record_fast(
            Event.Type.CLICK if kind == CLICK else Event.Type.OPEN, message_id, recipient_id,
            {"url": url, "index": index, "ip": client_ip(request),
             "user_agent": user_agent, "method": request.method},
            flags, now, durable=False,
        )
    except DatabaseError as exc:
        # The recipient still gets the link or the pixel: a lost event is the lesser harm.
        # Ids and the error's first line only; the URL and the address stay out of the log.
        log.error("tracking %s: event not recorded message=%s recipient=%s index=%s: %s: %s",
                  kind, message_id, recipient_id, index, type(exc).__name__,
                  str(exc).partition("\n")[0][:200])
    return url


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store, private"
    return response


@login_not_required
@require_http_methods(["GET", "HEAD"])
def click(request: HttpRequest, token: str) -> HttpResponse:
    url = _track(request, token, CLICK)
    return _no_store(_Redirect(url))


@login_not_required
@require_http_methods(["GET", "HEAD"])
def open_(request: HttpRequest, token: str) -> HttpResponse:
    url = _track(request, token, OPEN)
    if url == "":
        return _no_store(HttpResponse(PIXEL_GIF, content_type="image/gif"))
    return _no_store(_Redirect(url))


@csrf_exempt  # the CSRF check runs in _preview, after the size check: see preview()
def preview(request: HttpRequest) -> HttpResponse:
    """Paste or upload a message, pick one of your logins, see it as it would be delivered.

    An oversized request is refused from its Content-Length before its body is read (the CSRF
    check would read and spool the whole upload first): 413 with a message.
    """
    if request.method == "POST":
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > preview_service.MAX_PREVIEW_REQUEST_BYTES:
            log.info("preview: request of %s bytes refused", length)
            return _too_big(request, "The message is larger than 10 MiB.")
    try:
        return _preview(request)
    except RequestDataTooBig:  # a pasted message over DATA_UPLOAD_MAX_MEMORY_SIZE
        log.info("preview: pasted message over DATA_UPLOAD_MAX_MEMORY_SIZE refused")
        return _too_big(request, "The pasted message is too large; upload it as a file.")


def _too_big(request: HttpRequest, error: str) -> HttpResponse:
    form = preview_service.PreviewForm(request.user)
    return render(request, "features/preview.html", {"form": form, "error": error}, status=413)


def _login_pk(value: str) -> int:
    # str.isdigit() is also true for "²" or "١", which int() refuses or reads as another
    # number; and int() refuses over 4,300 digits. Anything else names no login (-1).
    if value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return -1


@csrf_protect
def _preview(request: HttpRequest) -> HttpResponse:
    chosen = request.POST.get("login")
    if chosen and not owns_login(request.user, _login_pk(chosen)):
        raise Http404("no such login")  # another customer's login is not even named
    form = preview_service.PreviewForm(request.user, request.POST or None, request.FILES or None)
    result = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            result = preview_service.run(form.cleaned_data)
        else:
            status = 400
            log.info("preview: invalid form (%s)", ", ".join(form.errors))
    return render(request, "features/preview.html", {"form": form, "result": result},
                  status=status)
