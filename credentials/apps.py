"""App config for SMTP logins."""
from django.apps import AppConfig


class CredentialsConfig(AppConfig):
    name = "credentials"
    verbose_name = "SMTP logins"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (connects the signal receivers)
