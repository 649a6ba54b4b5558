"""Dashboard forms: sign-in with throttling, a login's description and features, staff filters."""
from __future__ import annotations

import logging

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm
from django.db.models import QuerySet
from django.http import HttpRequest

from . import throttle
from .clientip import client_ip
from .models import FEATURE_NAMES, FEATURES, AuditEntry, Login, help_text

log = logging.getLogger("credentials.signin")


def _throttled_error() -> forms.ValidationError:
    return forms.ValidationError(
        "Too many failed sign-ins for this account or from your address. "
        f"Wait {throttle.window_minutes()} minutes and try again.",
        code="throttled",
    )


class ThrottledSigninMixin:
    """Refuses early once an account or address has failed too often; counts failures."""

    throttled = False

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        ip = client_ip(self.request) if self.request else None
        if throttle.is_throttled(username, ip):
            self.throttled = True
            log.warning("sign-in throttled: username=%r ip=%s", username, ip)
            raise _throttled_error()
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            if username:
                throttle.record_failure(username, ip)
                # The password is deliberately not logged, not even its length.
                log.warning("sign-in failed: username=%r ip=%s", username, ip)
            raise
        throttle.clear_account(username)
        log.info("sign-in: username=%r ip=%s", username, ip)
        return cleaned


class SigninForm(ThrottledSigninMixin, AuthenticationForm):
    """The dashboard's sign-in form."""


class AdminSigninForm(ThrottledSigninMixin, AdminAuthenticationForm):
    """The admin's sign-in form: same counters, so /admin/login/ is no way around them."""


class ThrottledPasswordChangeForm(PasswordChangeForm):
    """Password change whose wrong old passwords count as failed sign-ins (same counters), so a
    stolen session is no unthrottled way to guess the account's password."""

    throttled = False

    def __init__(self, user, *args, request: HttpRequest | None = None, **kwargs):
        self.request = request
        super().__init__(user, *args, **kwargs)

    def clean_old_password(self):
        username = self.user.get_username()
        ip = client_ip(self.request) if self.request else None
        if throttle.is_throttled(username, ip):
            self.throttled = True
            log.warning("password change throttled: username=%r ip=%s", username, ip)
            raise _throttled_error()
        try:
            old = super().clean_old_password()
        except forms.ValidationError:
            throttle.record_failure(username, ip)
            raise
        throttle.clear_account(username)
        return old


def _feature_field(label: str, text: str) -> forms.BooleanField:
    return forms.BooleanField(label=label, help_text=help_text(text), required=False)


class LoginForm(forms.Form):
    """Description and the five feature toggles of a login (create and edit)."""

    description = forms.CharField(
        max_length=Login._meta.get_field("description").max_length,
        required=False,
        help_text="For you: what sends with this login (an app, a server, a newsletter).",
        widget=forms.TextInput(attrs={"placeholder": "e.g. shop order mails"}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, label, text in FEATURES:
            self.fields[name] = _feature_field(label, text)

    @classmethod
    def initial_for(cls, login: Login) -> dict:
        return {"description": login.description, **login.featureset()}

    def feature_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in FEATURE_NAMES]

    def features(self) -> dict[str, bool]:
        return {name: self.cleaned_data[name] for name in FEATURE_NAMES}

    def enabled_features(self) -> list[str]:
        return [name for name, on in self.features().items() if on]


class LoginFilterForm(forms.Form):
    """Staff filter over every login: by customer and by features that must be on."""

    customer = forms.CharField(required=False, label="Customer (username)")
    features = forms.MultipleChoiceField(
        required=False,
        label="With these features on",
        choices=[(name, label) for name, label, _ in FEATURES],
        widget=forms.CheckboxSelectMultiple,
    )
    state = forms.ChoiceField(
        required=False,
        choices=[("", "enabled and disabled"), ("enabled", "enabled only"),
                 ("disabled", "disabled only")],
    )

    def filter(self, logins: QuerySet[Login]) -> QuerySet[Login]:
        if not self.is_valid():
            return logins.none()
        data = self.cleaned_data
        if data["customer"]:
            logins = logins.filter(owner__username__iexact=data["customer"].strip())
        for name in data["features"]:
            logins = logins.filter(**{name: True})
        if data["state"]:
            logins = logins.filter(enabled=data["state"] == "enabled")
        return logins


class AuditFilterForm(forms.Form):
    """Staff filter over the audit log."""

    customer = forms.CharField(required=False, label="Customer")
    login = forms.CharField(required=False, label="Login", help_text="username, or part of it")
    actor = forms.CharField(required=False, label="Changed by")
    action = forms.ChoiceField(required=False, choices=[("", "any action"),
                                                        *AuditEntry.Action.choices])
    date_from = forms.DateField(required=False, label="From",
                                widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To",
                              widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return data

    def filter(self, entries: QuerySet[AuditEntry]) -> QuerySet[AuditEntry]:
        if not self.is_valid():
            return entries.none()
        data = self.cleaned_data
        if data["customer"]:
            entries = entries.filter(owner_name__iexact=data["customer"].strip())
        if data["login"]:
            entries = entries.filter(login_username__icontains=data["login"].strip())
        if data["actor"]:
            entries = entries.filter(actor_name__iexact=data["actor"].strip())
        if data["action"]:
            entries = entries.filter(action=data["action"])
        if data["date_from"]:
            entries = entries.filter(time__date__gte=data["date_from"])
        if data["date_to"]:
            entries = entries.filter(time__date__lte=data["date_to"])
        return entries


def any_filter(form: forms.Form) -> bool:
    return form.is_valid() and any(v not in (None, "", []) for v in form.cleaned_data.values())




class ApiKeyForm(forms.Form):
    """A new REST API key: its name, scope and optional expiry (a date, the key works through
    the end of the day before)."""

    name = forms.CharField(max_length=100, help_text="What uses it, e.g. “billing app”.")
    scope = forms.ChoiceField(
        choices=[("read", "Read-only: events, messages, logins, suppressions"),
                 ("write", "Read-write: also send mail and change logins and suppressions")],
        initial="read", widget=forms.RadioSelect)
    expires = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}),
                              help_text="Optional. The key stops working at 00:00 UTC of "
                                        "this day.")

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("A key needs a name.")
        return name

    def clean_expires(self):
        from datetime import UTC, datetime, time

        from django.utils import timezone

        day = self.cleaned_data.get("expires")
        if day is None:
            return None
        when = datetime.combine(day, time(0), tzinfo=UTC)
        if when <= timezone.now():
            raise forms.ValidationError("Choose a day in the future.")
        return when
