"""Content-Security-Policy on every response: scripts, styles, images, fonts and frames come
from this site's own files only; no inline script or style, no plugins, no framing."""
from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

_DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def policy(**overrides: str) -> str:
    """The site's policy with some directives replaced (img_src="..." for img-src), for the
    one view that needs more; every other directive stays as strict."""
    directives = {**_DIRECTIVES, **{k.replace("_", "-"): v for k, v in overrides.items()}}
    return "; ".join(f"{name} {value}" for name, value in directives.items())


POLICY = policy()
HEADER = "Content-Security-Policy"


def csp_middleware(get_response: Callable[[HttpRequest], HttpResponse]):
    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        if settings.DEBUG and response.status_code in (404, 500):
            # Django's technical error pages are all inline style and script.
            return response
        # A view that needs a different (stricter) policy sets its own header.
        response.headers.setdefault(HEADER, POLICY)
        return response

    return middleware
