"""App configs for SMTP logins and for the Django admin (whose site is credentials.adminsite)."""
from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class CredentialsConfig(AppConfig):
    name = "credentials"
    verbose_name = "SMTP logins"

    def ready(self) -> None:
        from smtpeter_site import checks  # noqa: F401  (registers the deploy checks)

        from . import receivers  # noqa: F401  (connects the signal receivers)


class SiteAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with our AdminSite (its sign-in answers 429 when throttled)."""

    default = False  # "credentials" in INSTALLED_APPS still means CredentialsConfig
    default_site = "credentials.adminsite.AdminSite"
