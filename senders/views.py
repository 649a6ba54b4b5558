"""Dashboard pages of sender domains: the list, adding one, a domain's records with their
status, Check DNS, key rotation, deletion. Thin: services.py does the work and the audit."""
from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from credentials.clientip import client_ip

from . import services
from .forms import DomainForm
from .models import SenderDomain


def _own(request: HttpRequest, domain_id: int) -> SenderDomain:
    # Another customer's domain is "not found", exactly like one that does not exist.
    domain = services.own_domain(request.user, domain_id)
    if domain is None:
        raise Http404("no such sender domain")
    return domain


@require_http_methods(["GET", "POST"])
def domain_list(request: HttpRequest) -> HttpResponse:
    form = DomainForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            domain = services.add_domain(request.user, form.cleaned_data["domain"],
                                         ed25519=form.cleaned_data["ed25519"],
                                         actor=request.user, ip=client_ip(request))
        except services.DomainError as exc:
            form.add_error("domain", str(exc))
        else:
            messages.success(request, f"{domain.domain} added: publish its records below, "
                                      "then Check DNS.")
            return redirect("sender_domain", domain.pk)
    domains = services.domains_of(request.user)
    status = 400 if request.method == "POST" else 200
    return render(request, "senders/domains.html", {
        "domains": domains, "form": form, "relay_domain": settings.DKIM_RELAY_DOMAIN},
        status=status)


def domain_page(request: HttpRequest, domain_id: int) -> HttpResponse:
    domain = _own(request, domain_id)
    context = {"domain": domain, "records": services.records(domain),
               "bounce_domain": settings.BOUNCE_DOMAIN,
               "relay_domain": settings.DKIM_RELAY_DOMAIN,
               "unverified": settings.SENDER_UNVERIFIED,
               "grace_days": settings.SENDER_ROTATION_GRACE_DAYS}
    return render(request, "senders/domain.html", context)


@require_POST
def domain_check(request: HttpRequest, domain_id: int) -> HttpResponse:
    domain = _own(request, domain_id)
    was = domain.verified_at is not None
    found = services.check_domain(domain, actor=request.user, ip=client_ip(request))
    bad = [f for f in found if f.status != "right"]
    if domain.verified_at is not None and not was:
        messages.success(request, f"{domain.domain} is verified: its mail is signed with its "
                                  "own keys from now on.")
    elif domain.verified_at is None and was:
        messages.error(request, f"{domain.domain} stopped verifying: its DKIM record is not "
                                "as published.")
    elif bad:
        messages.info(request, f"{len(bad)} record(s) not right yet; DNS changes can take a "
                               "while to show.")
    else:
        messages.success(request, "Every record is right.")
    return redirect("sender_domain", domain.pk)


@require_POST
def domain_rotate(request: HttpRequest, domain_id: int) -> HttpResponse:
    domain = _own(request, domain_id)
    made = services.rotate(domain, actor=request.user, ip=client_ip(request))
    if made:
        messages.success(request, "New key(s) made: publish the new selector's record, then "
                                  "Check DNS; signing switches once it is found.")
    else:
        messages.info(request, "A rotation is already waiting for its record.")
    return redirect("sender_domain", domain.pk)


@require_http_methods(["GET", "POST"])
def domain_delete(request: HttpRequest, domain_id: int) -> HttpResponse:
    domain = _own(request, domain_id)
    if request.method == "POST":
        services.delete_domain(domain, actor=request.user, ip=client_ip(request))
        messages.success(request, f"{domain.domain} deleted; its mail is no longer signed "
                                  "with its keys.")
        return redirect("sender_domains")
    return render(request, "senders/domain_delete.html", {"domain": domain})
