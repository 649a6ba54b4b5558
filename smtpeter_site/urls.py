"""URL map: dashboard at / (messages and Outbox from relay, webhooks from events), tracking
endpoints at /t/, Django admin at /admin/."""
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("t/", include("features.urls")),
    path("preview/", include("features.dashboard_urls")),
    path("", include("relay.urls")),
    path("", include("events.urls")),
    path("", include("credentials.urls")),
]
