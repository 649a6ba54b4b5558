"""One-time form tokens: a form that shows a secret in its answer can be submitted once.

A reload of such a page re-POSTs the form; without a token that would create a second login
(or reset the password again) and show a new secret without anyone meaning to. The token is a
random nonce kept in the session; it is not secret (unlike the password, which is stored
nowhere), it only says "this form has not been submitted yet".
"""
from __future__ import annotations

import secrets

from django.http import HttpRequest

FIELD = "once"
_SESSION_KEY = "credentials:once"
# Enough for a few tabs open at once; older unsubmitted forms then count as submitted.
_KEEP = 20


def issue(request: HttpRequest) -> str:
    """A new token for a form about to be shown."""
    token = secrets.token_urlsafe(16)
    tokens = request.session.get(_SESSION_KEY, [])[-(_KEEP - 1):]
    request.session[_SESSION_KEY] = [*tokens, token]
    return token


def is_fresh(request: HttpRequest) -> bool:
    """True when the POST carries a token that was issued and not used yet."""
    return request.POST.get(FIELD, "") in request.session.get(_SESSION_KEY, [])


def use(request: HttpRequest) -> None:
    """Spend the POST's token: a second submission of the same form is then not fresh."""
    token = request.POST.get(FIELD, "")
    request.session[_SESSION_KEY] = [t for t in request.session.get(_SESSION_KEY, []) if t != token]
