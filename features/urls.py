"""Tracking endpoints, mounted at /t/: c/<token> for clicks, o/<token> for opens."""
from django.urls import path

from . import views

app_name = "features"
urlpatterns = [
    path("c/<str:token>", views.click, name="click"),
    path("o/<str:token>", views.open_, name="open"),
]
