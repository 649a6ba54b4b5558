"""App config for SMTP logins."""
from django.apps import AppConfig


class CredentialsConfig(AppConfig):
    name = "credentials"
    verbose_name = "SMTP logins"

    def ready(self) -> None:
        from smtpeter_site import checks  # noqa: F401  (registers the deploy checks)

        from . import receivers  # noqa: F401  (connects the signal receivers)
