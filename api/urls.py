"""/api/v1/: the router's endpoints, the OpenAPI schema and its interactive docs.

Paths work with and without their trailing slash (a POST redirected by APPEND_SLASH would
lose its body). A new endpoint is one ``router.register`` line. Every view here authenticates
by API key, not by session: they are exempt from the dashboard's LoginRequiredMiddleware, and a
Bearer token needs no CSRF token.
"""
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.renderers import JSONRenderer
from rest_framework.routers import SimpleRouter

from . import docs, views

router = SimpleRouter()
router.trailing_slash = "/?"  # the constructor only takes on or off
router.register("events", views.EventViewSet, basename="event")
router.register("messages", views.MessageViewSet, basename="message")
router.register("logins", views.LoginViewSet, basename="login")
router.register("suppressions", views.SuppressionViewSet, basename="suppression")
router.register("webhooks", views.WebhookViewSet, basename="webhook")
router.register("domains", views.DomainViewSet, basename="domain")

v1 = [
    # As the issue names it, without a trailing slash (a router action would add one).
    re_path(rf"^messages/(?P<queue_id>{views.MessageViewSet.lookup_value_regex})/raw$",
            views.MessageViewSet.as_view(
                {"get": "raw"}, renderer_classes=[JSONRenderer, views.RFC822Renderer]),
            name="message-raw"),
    # One report, not a list of objects: its own path so the schema does not call it an array.
    re_path(r"^stats/?$", views.StatsViewSet.as_view({"get": "report"}), name="stats-report"),
    *router.urls,
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", docs.SwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

urlpatterns = [
    path("v1/", include(v1)),
    re_path(r"^", views.not_found),
]


def _exempt(patterns) -> None:
    for p in patterns:
        if hasattr(p, "url_patterns"):
            _exempt(p.url_patterns)
        else:
            p.callback.login_required = False


_exempt(urlpatterns)
