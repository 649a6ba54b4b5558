"""WSGI entry point for the web app (dashboard, tracking endpoints, API)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smtpeter_site.settings")
application = get_wsgi_application()
