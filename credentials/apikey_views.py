"""Dashboard pages of REST API keys: list with a form to create one (its token shown once, on
the answer to that form), and revoke. Every change goes through credentials.apikeys, which
writes the audit entry."""
from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from . import apikeys, onetime
from .clientip import client_ip
from .forms import ApiKeyForm


def _page(request: HttpRequest, form: ApiKeyForm, once: str, status: int = 200) -> HttpResponse:
    context = {"keys": apikeys.keys_of(request.user), "form": form, "once": once,
               "now": timezone.now()}
    return render(request, "credentials/api_keys.html", context, status=status)


@never_cache
@require_http_methods(["GET", "POST"])
def api_keys(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _page(request, ApiKeyForm(), onetime.issue(request))
    if not onetime.is_fresh(request):
        # A reload of the page that showed a token: create nothing a second time.
        messages.info(request, "This form was sent already; the key's token was shown once "
                               "and is not stored. Create a new key if you lost it.")
        return redirect("api_keys")
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return _page(request, form, request.POST[onetime.FIELD], status=400)
    onetime.use(request)
    key, token = apikeys.create_key(
        request.user, form.cleaned_data["name"], form.cleaned_data["scope"],
        expires_at=form.cleaned_data["expires"], actor=request.user, ip=client_ip(request))
    # The token goes into this one response only: not the session, not a cache, not a URL.
    return render(request, "credentials/api_key_token.html", {"key": key, "token": token})


@require_POST
def api_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    key = apikeys.own_key(request.user, key_id)
    if key is None:
        raise Http404("no such key")
    if apikeys.revoke_key(key, actor=request.user, ip=client_ip(request)):
        messages.success(request, f"API key “{key.name}” revoked: it is refused from now on.")
    else:
        messages.info(request, f"API key “{key.name}” was revoked already.")
    return redirect("api_keys")
