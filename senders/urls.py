"""Dashboard URLs of sender domains."""
from django.urls import path

from . import views

urlpatterns = [
    path("domains/", views.domain_list, name="sender_domains"),
    path("domains/<int:domain_id>/", views.domain_page, name="sender_domain"),
    path("domains/<int:domain_id>/check/", views.domain_check, name="sender_domain_check"),
    path("domains/<int:domain_id>/rotate/", views.domain_rotate, name="sender_domain_rotate"),
    path("domains/<int:domain_id>/delete/", views.domain_delete, name="sender_domain_delete"),
]
