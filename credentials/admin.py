"""Django admin for logins (changes go through services, so they are audited) and the audit log
(read-only)."""
from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from . import services
from .clientip import client_ip
from .models import FEATURE_NAMES, AuditEntry, Login


@admin.register(Login)
class LoginAdmin(admin.ModelAdmin):
    # The hash is neither shown nor editable; the owner and username never change. Logins are
    # created in the dashboard or with `manage.py createlogin`, which can show the password once;
    # passwords are reset in the dashboard for the same reason (no admin action for it).
    list_display = ["username", "owner", "description", "enabled", *FEATURE_NAMES, "last_used"]
    list_filter = ["enabled", *FEATURE_NAMES]
    search_fields = ["username", "owner__username", "description"]
    fields = ["username", "owner", "description", "enabled", *FEATURE_NAMES,
              "created", "updated", "last_used"]
    readonly_fields = ["username", "owner", "created", "updated", "last_used"]
    list_select_related = ["owner"]

    def has_add_permission(self, request) -> bool:
        return False

    def save_model(self, request, obj: Login, form, change: bool) -> None:
        # Route the change through services so it writes the same audit entries as the dashboard.
        ip = client_ip(request)
        services.update_login(
            obj,
            actor=request.user,
            ip=ip,
            description=form.cleaned_data["description"],
            features={name: form.cleaned_data[name] for name in FEATURE_NAMES},
        )
        services.set_enabled(obj, form.cleaned_data["enabled"], actor=request.user, ip=ip)
        obj.refresh_from_db()

    def delete_model(self, request, obj: Login) -> None:
        services.delete_login(obj, actor=request.user, ip=client_ip(request))

    def delete_queryset(self, request, queryset) -> None:
        ip = client_ip(request)
        for login in queryset.select_related("owner"):
            services.delete_login(login, actor=request.user, ip=ip)


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["time", "owner_name", "login_username", "action", "actor_name", "ip"]
    list_filter = ["action", "time"]
    search_fields = ["owner_name", "login_username", "actor_name"]
    date_hierarchy = "time"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class AuditedUserAdmin(UserAdmin):
    """Django's user admin, naming the staff member who deletes a user in the audit entries of
    that user's logins (the deletion itself is audited by receivers.py either way)."""

    def delete_model(self, request, obj) -> None:
        with services.acting(request.user, client_ip(request)):
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        with services.acting(request.user, client_ip(request)):
            super().delete_queryset(request, queryset)


if admin.site.is_registered(get_user_model()):
    admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), AuditedUserAdmin)
