"""The Messages page's search form (relay.services.search() runs what it asks) and the forms
of the Suppressions page (relay.suppression)."""
from __future__ import annotations

from django import forms

from events.models import Event

from .classify import REASONS
from .models import Recipient, Suppression
from .services import Criteria
from .suppression import MAX_ADDRESS, MAX_DETAIL, normalize

TEXT_MAX = 200  # longer search text finds nothing a shorter one would not
IMPORT_MAX_BYTES = 10 * 1024 * 1024


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


class SuppressionSearchForm(forms.Form):
    q = _text("Address", "or part of it")
    reason = forms.ChoiceField(required=False, label="Reason",
                               choices=[("", "any"), *Suppression.Reason.choices])
    state = forms.ChoiceField(required=False, label="State",
                              choices=[("active", "suppressing"), ("expired", "expired"),
                                       ("all", "all")])
    customer = _text("Customer", "username")  # staff only (removed for customers)

    def __init__(self, *args, staff: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not staff:
            del self.fields["customer"]


class SuppressionAddForm(forms.Form):
    address = forms.CharField(label="Address", max_length=MAX_ADDRESS)
    detail = forms.CharField(required=False, label="Note", max_length=MAX_DETAIL,
                             help_text="why, for whoever reads the list later")
    customer = _text("Customer", "username; empty: yourself")  # staff only

    def __init__(self, *args, staff: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not staff:
            del self.fields["customer"]

    def clean_address(self) -> str:
        try:
            return normalize(self.cleaned_data["address"])
        except ValueError:
            raise forms.ValidationError(
                "Enter an email address such as name@example.org.") from None


class SuppressionImportForm(forms.Form):
    file = forms.FileField(label="CSV file", help_text=(
        "a column headed address (reason, detail and expires_at optional, as in an export), "
        "or one address per line"))
    customer = _text("Customer", "username; empty: yourself")  # staff only

    def __init__(self, *args, staff: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not staff:
            del self.fields["customer"]

    def clean_file(self) -> str:
        upload = self.cleaned_data["file"]
        if upload.size > IMPORT_MAX_BYTES:
            raise forms.ValidationError(
                f"The file has {upload.size} bytes; at most {IMPORT_MAX_BYTES} at once.")
        try:
            return upload.read().decode("utf-8")
        except UnicodeDecodeError:
            raise forms.ValidationError("The file is not UTF-8 text.") from None


class BounceSearchForm(forms.Form):
    kind = forms.ChoiceField(required=False, label="Type", choices=[
        ("", "bounces and complaints"), (Event.Type.BOUNCE, "bounces"),
        (Event.Type.COMPLAINT, "complaints")])
    bounce_class = forms.ChoiceField(required=False, label="Class", choices=[
        ("", "any"), ("hard", "hard"), ("soft", "soft")])
    reason = forms.ChoiceField(required=False, label="Reason", choices=[
        ("", "any"), *((r, r.replace("_", " ")) for r in REASONS)])
    login = _text("Login", "username, or part of it")
