"""App config for events (deliveries, bounces, opens, clicks, complaints)."""
from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "events"
    verbose_name = "Events"
