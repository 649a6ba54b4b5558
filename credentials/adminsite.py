"""The Django admin's site: its sign-in shares the dashboard's throttle and, like /signin/,
answers 429 once an account or address is throttled."""
from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse

from .forms import AdminSigninForm


class AdminSite(admin.AdminSite):
    login_form = AdminSigninForm

    @login_not_required  # as on the method it overrides (never_cache is applied inside it)
    def login(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        response = super().login(request, extra_context)
        # A refused form comes back as an unrendered TemplateResponse that still holds it.
        form = (getattr(response, "context_data", None) or {}).get("form")
        if getattr(form, "throttled", False):
            response.status_code = 429
        return response
