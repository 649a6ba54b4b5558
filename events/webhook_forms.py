"""The dashboard form of a webhook endpoint."""
from __future__ import annotations

from django import forms

from .models import Event, WebhookEndpoint
from .webhooks import url_problem


class EndpointForm(forms.Form):
    url = forms.CharField(label="URL", max_length=2000,
                          help_text="https:// address that receives a signed POST per event.")
    description = forms.CharField(max_length=200, required=False)
    event_types = forms.MultipleChoiceField(
        label="Event types", choices=Event.Type.choices, widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one event type."})

    def __init__(self, *args, endpoint: WebhookEndpoint | None = None, **kwargs):
        self.endpoint = endpoint
        super().__init__(*args, **kwargs)

    @classmethod
    def initial_for(cls, endpoint: WebhookEndpoint) -> dict:
        return {"url": endpoint.url, "description": endpoint.description,
                "event_types": endpoint.event_types}

    def clean_url(self) -> str:
        url = self.cleaned_data["url"].strip()
        if self.endpoint is None or url != self.endpoint.url:
            problem = url_problem(url)
            if problem:
                raise forms.ValidationError(problem[0].upper() + problem[1:] + ".")
        return url
