"""Staff views of sender domains and their audit log: read only (changes go through the
dashboard and senders.services, which audit them; private keys are never shown)."""
from django.contrib import admin

from .models import SenderAudit, SenderDomain


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(SenderDomain)
class SenderDomainAdmin(_ReadOnly):
    list_display = ["domain", "owner", "verified_at", "lapsed_at", "checked_at"]
    list_filter = ["verified_at"]
    search_fields = ["domain", "owner__username"]
    fields = ["domain", "owner", "created_at", "verified_at", "lapsed_at", "checked_at",
              "last_check"]


@admin.register(SenderAudit)
class SenderAuditAdmin(_ReadOnly):
    list_display = ["time", "action", "domain", "owner", "actor", "ip"]
    list_filter = ["action"]
    search_fields = ["domain", "owner__username", "actor__username"]
