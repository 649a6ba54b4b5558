"""The Statistics page's filter form."""
from __future__ import annotations

from datetime import date, timedelta

from django import forms

from .stats import MAX_DAYS, TAG_LENGTH

DEFAULT_DAYS = 30


class StatsForm(forms.Form):
    start = forms.DateField(required=False, label="From",
                            widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, label="To",
                          widget=forms.DateInput(attrs={"type": "date"}))
    login = forms.TypedChoiceField(required=False, label="Login", coerce=int, empty_value=None)
    tag = forms.CharField(required=False, label="Tag", max_length=TAG_LENGTH)
    machine = forms.BooleanField(required=False, label="Include machine opens and clicks",
                                 help_text="scanners and prefetching flagged by the tracking")
    customer = forms.CharField(required=False, label="Customer", max_length=150,
                               help_text="username; empty: every customer")

    def __init__(self, data, *, logins: list[tuple[int, str]], staff: bool, today: date):
        super().__init__(data)
        self.today = today
        self.fields["login"].choices = [("", "every login"), *logins]
        if not staff:
            del self.fields["customer"]

    def clean(self) -> dict:
        data = super().clean()
        end = data.get("end") or self.today
        start = data.get("start") or end - timedelta(days=DEFAULT_DAYS - 1)
        if start > end:
            self.add_error("start", "The first day is after the last.")
        elif (end - start).days >= MAX_DAYS:
            self.add_error("start", f"At most {MAX_DAYS} days at once.")
        data["start"], data["end"] = start, end
        data["tag"] = (data.get("tag") or "").strip()
        return data
