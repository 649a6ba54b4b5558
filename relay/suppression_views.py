"""Dashboard pages of the suppression list: list and search, add, remove (after a
confirmation), CSV import and export, and the recent changes by people.

A customer sees and changes only their own list: another customer's entry is "not found",
exactly like one that does not exist. Staff see every list (with a customer filter) and name
the customer when they add or import. Every change goes through relay.suppression, which
writes its audit entry.
"""
from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from credentials.clientip import client_ip

from . import suppression
from .forms import SuppressionAddForm, SuppressionImportForm, SuppressionSearchForm
from .models import Suppression, SuppressionAudit

log = logging.getLogger("relay.views")
PAGE_SIZE = 50
RECENT_CHANGES = 20


def _search(request: HttpRequest) -> tuple[SuppressionSearchForm, object]:
    form = SuppressionSearchForm(request.GET, staff=request.user.is_staff)
    if not form.is_valid():
        return form, None
    data = form.cleaned_data
    owner = None if request.user.is_staff else request.user.pk
    found = suppression.search(owner, data["q"], data["reason"], data["state"] or "active",
                               data.get("customer", "").strip())
    return form, found


def _owner_id(request: HttpRequest, form) -> int | None:
    """Whose list a form changes: the user's own; staff may name a customer."""
    name = (form.cleaned_data.get("customer") or "").strip()
    if not request.user.is_staff or not name:
        return request.user.pk
    owner = get_user_model().objects.filter(username=name).first()
    if owner is None:
        form.add_error("customer", "No customer with this username.")
        return None
    return owner.pk


def _page(request: HttpRequest, add_form=None, import_form=None, status: int = 200):
    form, found = _search(request)
    page = Paginator(found if found is not None else Suppression.objects.none(),
                     PAGE_SIZE).get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    changes = SuppressionAudit.objects.all()
    if not request.user.is_staff:
        changes = changes.filter(owner=request.user)
    context = {
        "form": form,
        "filtered": any(request.GET.get(k) for k in ("q", "reason", "state", "customer")),
        "page": page,
        "query": params.urlencode(),
        "now": timezone.now(),
        "add_form": add_form or SuppressionAddForm(staff=request.user.is_staff),
        "import_form": import_form or SuppressionImportForm(staff=request.user.is_staff),
        "changes": changes[:RECENT_CHANGES],
    }
    if found is None:
        status = 400
    return render(request, "relay/suppressions.html", context, status=status)


@require_GET
def suppression_list(request: HttpRequest) -> HttpResponse:
    return _page(request)


@require_POST
def suppression_add(request: HttpRequest) -> HttpResponse:
    form = SuppressionAddForm(request.POST, staff=request.user.is_staff)
    owner_id = _owner_id(request, form) if form.is_valid() else None
    if owner_id is None:
        return _page(request, add_form=form, status=400)
    address = form.cleaned_data["address"]
    suppression.add(owner_id, address, Suppression.Reason.MANUAL,
                    detail=form.cleaned_data["detail"], actor=request.user,
                    source=Suppression.Source.DASHBOARD, ip=client_ip(request))
    messages.success(request, f"{address} is suppressed: mail to it fails without being sent.")
    return redirect("suppressions")


@require_http_methods(["GET", "POST"])
def suppression_remove(request: HttpRequest, pk: int) -> HttpResponse:
    entries = Suppression.objects.select_related("owner")
    if not request.user.is_staff:
        entries = entries.filter(owner=request.user)
    entry = entries.filter(pk=pk).first()
    if entry is None:
        raise Http404("no such entry")
    if request.method == "POST":
        suppression.remove(entry.owner_id, entry.address, actor=request.user,
                           ip=client_ip(request))
        messages.success(request, f"{entry.address} is no longer suppressed.")
        return redirect("suppressions")
    return render(request, "relay/suppression_remove.html", {"entry": entry})


@require_POST
def suppression_import(request: HttpRequest) -> HttpResponse:
    form = SuppressionImportForm(request.POST, request.FILES, staff=request.user.is_staff)
    owner_id = _owner_id(request, form) if form.is_valid() else None
    if owner_id is None:
        return _page(request, import_form=form, status=400)
    result = suppression.import_csv(owner_id, form.cleaned_data["file"], actor=request.user,
                                    ip=client_ip(request))
    text = (f"Imported: {result.added} address{'es' if result.added != 1 else ''} added, "
            f"{result.unchanged} already suppressed.")
    if result.error_count:
        messages.warning(request, f"{text} {result.error_count} row(s) skipped: "
                                  + "; ".join(result.errors))
    else:
        messages.success(request, text)
    return redirect("suppressions")


@require_GET
def suppression_export(request: HttpRequest) -> HttpResponse:
    form, found = _search(request)
    if found is None:
        return HttpResponse(f"bad filter: {form.errors.as_text()}", status=400,
                            content_type="text/plain")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="suppressions-{stamp}.csv"'
    suppression.export_csv(response, found.iterator())
    return response
