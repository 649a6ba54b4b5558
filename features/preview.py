"""The preview: render a pasted or uploaded message with one of the customer's logins."""
from __future__ import annotations

from collections import Counter

from django import forms

from credentials import services as credentials

from .overrides import apply_overrides
from .services import context, prepare_message

MAX_PREVIEW_BYTES = 10 * 1024 * 1024
# The whole POST: the file plus the form's other fields and the multipart framing.
MAX_PREVIEW_REQUEST_BYTES = MAX_PREVIEW_BYTES + 64 * 1024
CHANGE_LABELS = {
    "link": "links rewritten",
    "text-link": "plain-text links rewritten",
    "kept": "links left alone by preventscam",
    "notrack": "elements left alone (data-notrack)",
    "untracked": "links or images over the limits, left untracked",
    "image": "images tracked",
    "pixel": "tracking pixel inserted",
    "css": "CSS inlined",
    "charset": "charset switched",
    "encoding": "transfer encoding switched",
}


class PreviewForm(forms.Form):
    login = forms.ModelChoiceField(queryset=credentials.logins_of(None).none(), empty_label=None)
    message = forms.CharField(widget=forms.Textarea(attrs={"rows": 14, "cols": 90}),
                              required=False, strip=False, label="Message (RFC 5322)")
    upload = forms.FileField(required=False, label="or upload a .eml file")
    rcpt = forms.EmailField(initial="recipient@example.com", label="Recipient")
    mail_from = forms.CharField(initial="sender@example.com", required=False,
                                label="Envelope sender")

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["login"].queryset = credentials.logins_of(user)
        self.fields["login"].label_from_instance = lambda login: (
            f"{login.username} ({', '.join(login.enabled_features()) or 'no features'})"
        )

    def clean(self):
        data = super().clean()
        upload = data.get("upload")
        if upload is not None:
            if upload.size > MAX_PREVIEW_BYTES:
                raise forms.ValidationError("The file is larger than 10 MiB.")
            data["raw"] = upload.read()
        elif data.get("message"):
            data["raw"] = data["message"].encode("utf-8")
        else:
            raise forms.ValidationError("Paste a message or upload a file.")
        return data


def run(data: dict) -> dict:
    """Render the form's message for its recipient; what the template shows."""
    login = data["login"]
    features, tags = apply_overrides(login.featureset(), data["raw"])
    prepared = prepare_message(data["raw"], features)
    rendered = prepared.for_recipient(context(0, 0, data.get("mail_from") or "", data["rcpt"]))
    counts = Counter(c.kind for c in prepared.changes)
    return {
        "message": rendered.message.decode("utf-8", "replace"),
        "envelope_sender": rendered.envelope_sender or "<>",
        "warnings": rendered.warnings,
        "features": [name for name, on in features.items() if on],
        "tags": tags,
        "summary": [(CHANGE_LABELS.get(k, k), n) for k, n in counts.items()],
        "changes": [(CHANGE_LABELS.get(c.kind, c.kind), c.detail) for c in prepared.changes],
    }
