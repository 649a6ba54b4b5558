"""App config for the five per-login features and the tracking endpoints."""
from django.apps import AppConfig


class FeaturesConfig(AppConfig):
    name = "features"
    verbose_name = "Features"
