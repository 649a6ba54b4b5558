"""Dashboard pages of webhooks: the customer's endpoints and a new one (its secret shown once),
one endpoint's page (change, enable or disable, send a test event, delete) with its delivery
log. Another customer's endpoint is "not found". Every change goes through events.webhooks,
which writes its audit entry."""
from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from credentials import onetime
from credentials.clientip import client_ip

from . import webhooks
from .models import WebhookEndpoint
from .webhook_forms import EndpointForm


def _own(request: HttpRequest, pk: int) -> WebhookEndpoint:
    endpoint = webhooks.endpoint_of(request.user, pk)
    if endpoint is None:
        raise Http404("no such webhook endpoint")
    return endpoint


@never_cache
@require_http_methods(["GET", "POST"])
def endpoint_list(request: HttpRequest) -> HttpResponse:
    form = EndpointForm(request.POST or None)
    if request.method == "POST":
        if not onetime.is_fresh(request):
            messages.info(request, "This form was sent already; the endpoint's secret was "
                                   "shown once and is not shown again.")
            return redirect("webhooks")
        if form.is_valid():
            onetime.use(request)
            endpoint, secret = webhooks.create_endpoint(
                request.user, form.cleaned_data["url"], form.cleaned_data["event_types"],
                form.cleaned_data["description"], actor=request.user, ip=client_ip(request))
            # The secret goes into this one response only: not the session, not a URL.
            return render(request, "events/webhook_secret.html",
                          {"endpoint": endpoint, "secret": secret})
    once = request.POST[onetime.FIELD] if request.method == "POST" else onetime.issue(request)
    endpoints = list(webhooks.endpoints_of(request.user))
    return render(request, "events/webhooks.html",
                  {"form": form, "once": once, "endpoints": endpoints},
                  status=400 if request.method == "POST" else 200)


@never_cache
@require_http_methods(["GET", "POST"])
def endpoint_page(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _own(request, pk)
    form = EndpointForm(request.POST or None, endpoint=endpoint,
                        initial=EndpointForm.initial_for(endpoint))
    if request.method == "POST" and form.is_valid():
        webhooks.update_endpoint(
            endpoint, url=form.cleaned_data["url"], event_types=form.cleaned_data["event_types"],
            description=form.cleaned_data["description"], actor=request.user,
            ip=client_ip(request))
        messages.success(request, "Webhook endpoint saved.")
        return redirect("webhook", pk=endpoint.pk)
    return render(request, "events/webhook.html", {
        "endpoint": endpoint, "form": form, "log": webhooks.delivery_log(endpoint),
        "pending": webhooks.pending_count(endpoint),
    }, status=400 if request.method == "POST" else 200)


@require_POST
def endpoint_set_enabled(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _own(request, pk)
    enable = request.POST.get("enabled") == "true"
    webhooks.set_enabled(endpoint, enable, actor=request.user, ip=client_ip(request))
    messages.success(request, f"Webhook endpoint {'enabled' if enable else 'disabled'}.")
    return redirect("webhook", pk=endpoint.pk)


@require_POST
def endpoint_test(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _own(request, pk)
    webhooks.send_test(endpoint, actor=request.user, ip=client_ip(request))
    messages.success(request, "A test event is on its way; its answer appears in the log below."
                     if endpoint.enabled else
                     "A test event is queued; it is sent once the endpoint is enabled.")
    return redirect("webhook", pk=endpoint.pk)


@require_POST
def endpoint_delete(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _own(request, pk)
    webhooks.delete_endpoint(endpoint, actor=request.user, ip=client_ip(request))
    messages.success(request, f"Webhook endpoint {endpoint.url} deleted.")
    return redirect("webhooks")
