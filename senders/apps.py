"""App config for sender domains (DKIM keys, DNS records and their checks)."""
from django.apps import AppConfig


class SendersConfig(AppConfig):
    name = "senders"
    verbose_name = "sender domains"
