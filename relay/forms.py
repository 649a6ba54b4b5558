"""The Messages page's search form; relay.services.search() runs what it asks."""
from __future__ import annotations

from django import forms

from .models import Recipient
from .services import Criteria

TEXT_MAX = 200  # longer search text finds nothing a shorter one would not


def _text(label: str, help_text: str = "") -> forms.CharField:
    return forms.CharField(required=False, label=label, max_length=TEXT_MAX, help_text=help_text)


class MessageSearchForm(forms.Form):
    recipient = _text("Recipient", "address, or part of it")
    sender = _text("Sender", "envelope sender, or part of it")
    subject = _text("Subject", "or part of it")
    queue_id = _text("Queue ID", "or its beginning")
    login = _text("Login", "username, or part of it")
    tag = _text("Tag", "exactly, as in X-SMTPeter-Tags")
    status = forms.ChoiceField(
        required=False, label="Status",
        choices=[("", "any"), *((s, f"a recipient {label}") for s, label in
                                Recipient.State.choices if s != Recipient.State.INTAKE)],
    )
    date_from = forms.DateField(required=False, label="From",
                                widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To",
                              widget=forms.DateInput(attrs={"type": "date"}))
    # Staff only (removed for customers).
    customer = _text("Customer", "username")
    kind = forms.ChoiceField(
        required=False, label="Kind",
        choices=[("", "sent mail and DSNs"), ("intake", "intake (bounces, complaints)"),
                 ("all", "all")],
    )

    def __init__(self, *args, staff: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not staff:
            del self.fields["customer"], self.fields["kind"]

    def clean(self):
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return data

    def criteria(self) -> Criteria:
        """What to search for; call only when the form is valid."""
        data = {k: v.strip() if isinstance(v, str) else v for k, v in self.cleaned_data.items()}
        data["kind"] = data.get("kind") or "outbound"
        return Criteria(**data)
