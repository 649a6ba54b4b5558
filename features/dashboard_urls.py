"""The preview page, mounted at /preview/ with the dashboard."""
from django.urls import path

from . import views

app_name = "preview"
urlpatterns = [path("", views.preview, name="preview")]
