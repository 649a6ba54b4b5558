"""Dashboard URL of the events app: the Statistics page."""
from django.urls import path

from . import views

urlpatterns = [
    path("stats/", views.statistics, name="stats"),
]
