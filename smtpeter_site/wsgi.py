"""WSGI entry point for the web app (dashboard, tracking endpoints, API).

The tracking endpoints (/t/...) take most of a relay's web traffic and use no session, user,
CSRF token or message: their requests go through the same Django handler (URLconf, views,
signals, error handling) with only the middleware that checks the Host and sets response
headers, which saves about a fifth of each click's CPU. Everything else gets the full
MIDDLEWARE list. Views under /t/ are public and get no CSRF check: add none that changes state
on POST.
"""
import os

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smtpeter_site.settings")
site = get_wsgi_application()

TRACKING_PREFIX = "/t/"  # where smtpeter_site/urls.py mounts features.urls
TRACKING_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",  # HSTS, nosniff, Referrer-Policy, COOP
    "django.middleware.common.CommonMiddleware",  # ALLOWED_HOSTS (400), Content-Length
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "smtpeter_site.csp.csp_middleware",  # the 404 page is a page
]


class TrackingHandler(WSGIHandler):
    """Django's WSGI handler with TRACKING_MIDDLEWARE instead of settings.MIDDLEWARE."""

    def load_middleware(self, is_async: bool = False) -> None:
        # BaseHandler.load_middleware reads settings.MIDDLEWARE and nothing else; lending it
        # the short list for this one call (at import, before any request) reuses Django's own
        # loading instead of a copy of it.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = [m for m in full if m in TRACKING_MIDDLEWARE]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


tracking = TrackingHandler()


def application(environ: dict, start_response):
    if environ.get("PATH_INFO", "").startswith(TRACKING_PREFIX):
        return tracking(environ, start_response)
    return site(environ, start_response)
