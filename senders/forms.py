"""The form that adds a sender domain."""
from django import forms

from .services import DomainError, normalize


class DomainForm(forms.Form):
    domain = forms.CharField(max_length=253, help_text="The domain in your From addresses, "
                             "e.g. example.com (it also covers news.example.com).")
    ed25519 = forms.BooleanField(required=False, label="Also sign with Ed25519",
                                 help_text="A second, shorter signature (RFC 8463) beside RSA; "
                                 "receivers that do not know it use the RSA one.")

    def clean_domain(self) -> str:
        try:
            return normalize(self.cleaned_data["domain"])
        except DomainError as exc:
            raise forms.ValidationError(str(exc)) from None
