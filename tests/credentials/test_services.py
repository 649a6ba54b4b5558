"""Logins: generated names and passwords, argon2 storage, and the audit entry of each change."""
import pytest
from django.contrib.auth.hashers import identify_hasher

from credentials import services
from credentials.models import AuditEntry, Login

pytestmark = pytest.mark.django_db


def test_create_login_stores_only_an_argon2_hash(alice):
    login, password = services.create_login(alice, features=["clicktracking", "inlinecss"])
    assert len(password) >= 24
    assert password not in login.password_hash
    assert identify_hasher(login.password_hash).algorithm == "argon2"
    assert login.username.startswith("smtp-") and "alice" not in login.username
    assert login.enabled_features() == ["clicktracking", "inlinecss"]
    assert services.authenticate(login.username, password) == login
    assert services.authenticate(login.username, password + "x") is None
    assert services.authenticate("smtp-nobody", password) is None


def test_usernames_and_passwords_are_unique(alice):
    made = [services.create_login(alice) for _ in range(20)]
    assert len({login.username for login, _ in made}) == 20
    assert len({pw for _, pw in made}) == 20


def test_unknown_feature_is_refused(alice):
    with pytest.raises(ValueError, match="unknown feature"):
        services.create_login(alice, features=["clicktracking", "teleport"])
    assert not Login.objects.exists()


def test_disabled_login_does_not_authenticate(alice):
    login, password = services.create_login(alice)
    services.set_enabled(login, False, actor=alice)
    assert services.authenticate(login.username, password) is None


def test_every_change_writes_one_audit_entry(alice, staff):
    login, first = services.create_login(alice, features=["openstracking"], ip="192.0.2.7")
    services.update_login(login, actor=alice, features={"clicktracking": True}, ip="192.0.2.7")
    services.update_login(login, actor=alice, description="newsletter")
    services.update_login(login, actor=alice, description="newsletter")  # no change, no entry
    services.set_enabled(login, False, actor=staff)
    services.set_enabled(login, True, actor=staff)
    second = services.reset_password(login, actor=alice)
    services.delete_login(login, actor=alice)

    entries = list(AuditEntry.objects.order_by("id"))
    assert [e.action for e in entries] == [
        "created", "features_changed", "description_changed",
        "disabled", "enabled", "password_reset", "deleted",
    ]
    changed = entries[1]
    assert changed.features_before["clicktracking"] is False
    assert changed.features_after["clicktracking"] is True
    assert changed.features_after["openstracking"] is True
    assert changed.ip == "192.0.2.7"
    assert entries[3].actor_name == "auditor"
    assert all(e.login_username == entries[0].login_username for e in entries)
    assert entries[-1].features_before["openstracking"] is True
    dump = repr([(e.details, e.features_before, e.features_after) for e in entries])
    assert first not in dump and second not in dump and "argon2" not in dump


def test_audit_entries_cannot_be_changed_or_deleted(alice):
    services.create_login(alice)
    entry = AuditEntry.objects.get()
    entry.action = "deleted"
    with pytest.raises(ValueError):
        entry.save()
    with pytest.raises(ValueError):
        entry.delete()
    assert AuditEntry.objects.get().action == "created"
