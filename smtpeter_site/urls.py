"""URL map: dashboard at / (messages and Outbox from relay, Statistics and webhooks from events),
tracking endpoints at /t/, Django admin at /admin/, REST API at /api/ (api.urls), /healthz and
/metrics (smtpeter_site.health)."""
from django.contrib import admin
from django.urls import include, path

from . import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("metrics", health.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/", include("api.urls")),
    path("t/", include("features.urls")),
    path("preview/", include("features.dashboard_urls")),
    path("", include("relay.urls")),
    path("", include("events.urls")),
    path("", include("credentials.urls")),
    path("", include("senders.urls")),
]
