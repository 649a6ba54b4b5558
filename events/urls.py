"""Dashboard URLs of the events app: the Statistics page, and webhooks (the endpoints, one
endpoint's page and its actions)."""
from django.urls import path

from . import views, webhook_views

urlpatterns = [
    path("stats/", views.statistics, name="stats"),
    path("webhooks/", webhook_views.endpoint_list, name="webhooks"),
    path("webhooks/<int:pk>/", webhook_views.endpoint_page, name="webhook"),
    path("webhooks/<int:pk>/enabled/", webhook_views.endpoint_set_enabled,
         name="webhook_set_enabled"),
    path("webhooks/<int:pk>/test/", webhook_views.endpoint_test, name="webhook_test"),
    path("webhooks/<int:pk>/delete/", webhook_views.endpoint_delete, name="webhook_delete"),
]
