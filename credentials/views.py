"""Dashboard views: sign-in, the customer's logins, the connect page, the staff audit area.

Views stay thin: every change goes through services.py, which writes the audit entry.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.contrib.messages.views import SuccessMessageMixin
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from . import onetime, services, snippets
from .clientip import client_ip
from .forms import (
    AuditFilterForm,
    LoginFilterForm,
    LoginForm,
    SigninForm,
    ThrottledPasswordChangeForm,
    any_filter,
)
from .forms import log as signin_log
from .models import FEATURES, AuditEntry, Login
from .reports import write_logins_csv

AUDIT_PAGE_SIZE = 50


# --- account ---------------------------------------------------------------------------------

@method_decorator(login_not_required, name="dispatch")
class SigninView(auth_views.LoginView):
    template_name = "credentials/signin.html"
    form_class = SigninForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.throttled:
            response.status_code = 429
        return response


class SignoutView(auth_views.LogoutView):
    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        messages.info(request, "You are signed out.")
        return response


class PasswordChangeView(SuccessMessageMixin, auth_views.PasswordChangeView):
    template_name = "credentials/password_change.html"
    form_class = ThrottledPasswordChangeForm
    success_url = reverse_lazy("logins")
    success_message = "Your dashboard password was changed."

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "request": self.request}

    def form_valid(self, form):
        response = super().form_valid(form)
        # Names and address only: neither password reaches a log line.
        signin_log.info("password changed: username=%r ip=%s",
                        self.request.user.get_username(), client_ip(self.request))
        return response

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.throttled:
            response.status_code = 429
        else:
            signin_log.warning("password change failed: username=%r ip=%s (%s)",
                               self.request.user.get_username(), client_ip(self.request),
                               ", ".join(form.errors))
        return response


# --- the customer's logins -------------------------------------------------------------------

def _own_login(request: HttpRequest, login_id: int) -> Login:
    # Another customer's login is "not found", exactly like one that does not exist.
    return get_object_or_404(Login, pk=login_id, owner=request.user)


def _gone_is_404(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A login deleted by another request after _own_login found it is 404, not a 500.

    The services re-read the row under a lock (select_for_update().get()), which raises
    DoesNotExist when it is gone by then.
    """
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except Login.DoesNotExist:
            raise Http404("no such login") from None
    return wrapped


def _show_password(request: HttpRequest, login: Login, password: str) -> HttpResponse:
    # The password goes into this one response and nowhere else: not the session, not a cache
    # (the views are never_cache, so no-store), not a URL. A GET of this URL shows the form.
    context = {"login": login, "password": password}
    return render(request, "credentials/login_password.html", context)


def _already_sent(request: HttpRequest, login: Login | None = None) -> HttpResponse:
    # A reload of the password page re-POSTs its form: create or reset nothing a second time.
    what = f"the password of {login.username}" if login else "the new login's password"
    messages.info(
        request,
        f"This form was sent already; {what} was shown once and is not stored. "
        "Reset the password to get a new one.",
    )
    return redirect("logins")


def logins(request: HttpRequest) -> HttpResponse:
    items = list(request.user.smtp_logins.all())
    # The relay's figures per login (sent, delivered, bounced, complaints over 7 days).
    from relay.services import login_figures

    figures = login_figures([login.pk for login in items])
    for login in items:
        login.figures = figures[login.pk]
    return render(request, "credentials/logins.html", {"logins": items, "features": FEATURES})


@never_cache
@require_http_methods(["GET", "POST"])
def login_create(request: HttpRequest) -> HttpResponse:
    if request.method == "POST" and not onetime.is_fresh(request):
        return _already_sent(request)
    form = LoginForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        onetime.use(request)
        login, password = services.create_login(
            request.user,
            features=form.enabled_features(),
            description=form.cleaned_data["description"],
            actor=request.user,
            ip=client_ip(request),
        )
        messages.success(request, f"Login {login.username} created.")
        return _show_password(request, login, password)
    # An invalid form keeps its token: the corrected form is still its first submission.
    once = request.POST[onetime.FIELD] if request.method == "POST" else onetime.issue(request)
    context = {"form": form, "login": None, "once": once}
    return render(request, "credentials/login_form.html", context)


@_gone_is_404
@require_http_methods(["GET", "POST"])
def login_edit(request: HttpRequest, login_id: int) -> HttpResponse:
    login = _own_login(request, login_id)
    form = LoginForm(request.POST or None, initial=LoginForm.initial_for(login))
    if request.method == "POST" and form.is_valid():
        changes = services.update_login(
            login,
            actor=request.user,
            ip=client_ip(request),
            description=form.cleaned_data["description"],
            features=form.features(),
        )
        if changes:
            messages.success(request, f"Login {login.username} saved.")
        else:
            messages.info(request, f"Nothing changed on {login.username}.")
        return redirect("logins")
    return render(request, "credentials/login_form.html", {"form": form, "login": login})


@_gone_is_404
@require_POST
def login_set_enabled(request: HttpRequest, login_id: int) -> HttpResponse:
    login = _own_login(request, login_id)
    enable = request.POST.get("enabled")
    if enable not in ("true", "false"):
        return HttpResponse("enabled must be true or false", status=400, content_type="text/plain")
    services.set_enabled(login, enable == "true", actor=request.user, ip=client_ip(request))
    if enable == "true":
        messages.success(request, f"Login {login.username} enabled: it can send again.")
    else:
        messages.success(request, f"Login {login.username} disabled: the relay refuses it now.")
    return redirect("logins")


@_gone_is_404
@never_cache
@require_http_methods(["GET", "POST"])
def login_reset(request: HttpRequest, login_id: int) -> HttpResponse:
    login = _own_login(request, login_id)
    if request.method == "POST":
        if not onetime.is_fresh(request):
            return _already_sent(request, login)
        onetime.use(request)
        password = services.reset_password(login, actor=request.user, ip=client_ip(request))
        messages.success(request, f"Login {login.username} has a new password.")
        return _show_password(request, login, password)
    context = {"login": login, "once": onetime.issue(request)}
    return render(request, "credentials/login_reset.html", context)


@require_http_methods(["GET", "POST"])
def login_delete(request: HttpRequest, login_id: int) -> HttpResponse:
    login = _own_login(request, login_id)
    if request.method == "POST":
        username = login.username
        if not services.delete_login(login, actor=request.user, ip=client_ip(request)):
            raise Http404("no such login")  # deleted meanwhile by another request
        messages.success(request, f"Login {username} deleted.")
        return redirect("logins")
    return render(request, "credentials/login_delete.html", {"login": login})


def connect(request: HttpRequest) -> HttpResponse:
    own = request.user.smtp_logins.all()
    chosen = None
    if request.GET.get("login"):
        try:
            chosen = _own_login(request, int(request.GET["login"]))
        except ValueError:
            raise Http404("no such login") from None
    elif len(own) == 1:
        chosen = own[0]
    context = {
        "host": settings.SMTP_HOSTNAME,
        "ports": snippets.ports(),
        "logins": own,
        "chosen": chosen,
        "snippets": snippets.snippets(chosen.username if chosen else None),
        "password_placeholder": snippets.PASSWORD_PLACEHOLDER,
    }
    return render(request, "credentials/connect.html", context)


# --- staff audit area ------------------------------------------------------------------------

def staff_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Staff pages are "not found" for everyone else, so they do not reveal that they exist."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_staff:
            raise Http404("not found")
        return view(request, *args, **kwargs)

    return wrapper


def _filtered_logins(request: HttpRequest) -> tuple[LoginFilterForm, QuerySet[Login]]:
    form = LoginFilterForm(request.GET)
    logins = form.filter(Login.objects.select_related("owner").order_by("owner__username", "id"))
    return form, logins


def _paged(request: HttpRequest, form, items: QuerySet, template: str,
           **context) -> HttpResponse:
    """One page of ``items``; an invalid filter is 400 with its errors, as the CSV export is."""
    page = Paginator(items, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    context.update({
        "form": form,
        "filtered": any_filter(form),
        "page": page,
        "query": params.urlencode(),
        "features": FEATURES,
    })
    return render(request, template, context, status=200 if form.is_valid() else 400)


@staff_only
def audit_logins(request: HttpRequest) -> HttpResponse:
    form, logins = _filtered_logins(request)
    return _paged(request, form, logins, "credentials/audit_logins.html")


@staff_only
def audit_logins_csv(request: HttpRequest) -> HttpResponse:
    form, logins = _filtered_logins(request)
    if not form.is_valid():
        return HttpResponse(
            f"bad filter: {form.errors.as_text()}", status=400, content_type="text/plain"
        )
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="smtpeter-logins-{stamp}.csv"'
    write_logins_csv(response, logins.iterator())
    return response


@staff_only
def audit_log(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET)
    entries = form.filter(AuditEntry.objects.all())
    return _paged(request, form, entries, "credentials/audit_log.html")
