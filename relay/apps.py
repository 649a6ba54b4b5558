"""App config for the MTA: listeners, queue, delivery."""
from django.apps import AppConfig


class RelayConfig(AppConfig):
    name = "relay"
    verbose_name = "Relay queue"
