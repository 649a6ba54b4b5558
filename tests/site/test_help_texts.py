"""Help texts and labels of every model and form: Django's admin and form.as_p print help texts
as HTML (|safe), so a plain-text help text with "<" or "&" would be read as markup."""
import re

import pytest
from django.apps import apps
from django.utils.functional import Promise
from django.utils.safestring import SafeData

from credentials.forms import (
    AdminSigninForm,
    AuditFilterForm,
    LoginFilterForm,
    LoginForm,
    SigninForm,
    ThrottledPasswordChangeForm,
)
from features.preview import PreviewForm

OUR_APPS = ["credentials", "features", "relay", "events"]
MARKUP = re.compile(r"[<>&]")


def plain_or_marked_html(text) -> bool:
    # Deliberate HTML is built with escape()/format_html() and so is SafeData; anything else
    # must hold no character that HTML would read as markup.
    if isinstance(text, Promise):  # lazy: what the template sees once it is resolved
        text = str(text)
    return isinstance(text, SafeData) or not MARKUP.search(str(text))


def model_texts():
    for label in OUR_APPS:
        for model in apps.get_app_config(label).get_models():
            for field in model._meta.get_fields():
                for attr in ("help_text", "verbose_name"):
                    text = getattr(field, attr, "")
                    if text:
                        yield f"{model.__name__}.{field.name}.{attr}", text


def form_texts(user):
    forms = [LoginForm(), LoginFilterForm(), AuditFilterForm(), SigninForm(), AdminSigninForm(),
             PreviewForm(user), ThrottledPasswordChangeForm(user)]
    for form in forms:
        for name, field in form.fields.items():
            for attr in ("help_text", "label"):
                text = getattr(field, attr, "")
                if text:
                    yield f"{type(form).__name__}.{name}.{attr}", text


@pytest.mark.django_db
def test_every_help_text_and_label_is_plain_text_or_marked_html(alice):
    texts = [*model_texts(), *form_texts(alice)]
    assert any(name == "Login.inlinecss.help_text" for name, _ in texts)  # the walk finds them
    bad = [name for name, text in texts if not plain_or_marked_html(text)]
    assert bad == []
