"""Signal receivers: a customer's deletion goes through the audit log for each of their logins."""
from django.contrib.auth import get_user_model
from django.db.models.signals import pre_delete
from django.dispatch import receiver

from . import services


@receiver(pre_delete, sender=get_user_model(), dispatch_uid="credentials-audit-owner-deletion")
def audit_logins_of_deleted_owner(sender, instance, **kwargs) -> None:
    # Login.owner is CASCADE: without this, deleting a user (admin, ORM, shell) would remove
    # their logins with no "deleted" audit entry. Entries keep the owner's and login's names.
    services.delete_logins_of(instance)
