"""Dashboard URLs of webhooks: the endpoints, one endpoint's page and its actions."""
from django.urls import path

from . import views

urlpatterns = [
    path("webhooks/", views.endpoint_list, name="webhooks"),
    path("webhooks/<int:pk>/", views.endpoint_page, name="webhook"),
    path("webhooks/<int:pk>/enabled/", views.endpoint_set_enabled, name="webhook_set_enabled"),
    path("webhooks/<int:pk>/test/", views.endpoint_test, name="webhook_test"),
    path("webhooks/<int:pk>/delete/", views.endpoint_delete, name="webhook_delete"),
]
