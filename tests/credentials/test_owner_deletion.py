"""Deleting a customer deletes their logins through the audit log: one "deleted" entry each."""
import pytest
from django.contrib.auth import get_user_model

from credentials import services
from credentials.models import AuditEntry, Login

from .conftest import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_logins(alice):
    first, _ = services.create_login(alice, features=["clicktracking"], description="shop")
    second, _ = services.create_login(alice, features=["inlinecss", "bouncetracking"])
    return [first, second]


def deletions() -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action="deleted").order_by("login_username"))


def test_orm_deletion_of_a_user_audits_each_login_as_system(alice, alice_logins, bob_login):
    alice.delete()
    assert not Login.objects.filter(username__in=[x.username for x in alice_logins]).exists()
    entries = deletions()
    assert [e.login_username for e in entries] == sorted(x.username for x in alice_logins)
    for entry, login in zip(entries, sorted(alice_logins, key=lambda x: x.username), strict=True):
        assert (entry.actor, entry.actor_name, entry.ip) == (None, "system", None)
        # The owner row is gone, the names stay readable.
        assert (entry.owner, entry.owner_name, entry.login) == (None, "alice", None)
        assert entry.features_before == login.featureset()
        assert entry.details == {"reason": "owner deleted"}
    # bob's login and its history are untouched.
    assert Login.objects.filter(pk=bob_login.pk).exists()
    assert AuditEntry.objects.filter(owner_name="bob", action="deleted").count() == 0


def test_queryset_deletion_of_users_is_audited_too(alice, bob, alice_logins, bob_login):
    get_user_model().objects.filter(username__in=["alice", "bob"]).delete()
    assert not Login.objects.exists()
    assert sorted(e.owner_name for e in deletions()) == ["alice", "alice", "bob"]


def test_a_user_without_logins_is_deleted_without_entries(bob):
    bob.delete()
    assert not AuditEntry.objects.exists()


def test_admin_user_deletion_names_the_staff_member(admin_user, alice, alice_logins):
    client = signed_in(admin_user)
    response = client.post(f"/admin/auth/user/{alice.pk}/delete/", {"post": "yes"},
                           REMOTE_ADDR="192.0.2.90")
    assert response.status_code == 302
    assert not get_user_model().objects.filter(username="alice").exists()
    entries = deletions()
    assert len(entries) == 2
    assert {(e.actor, e.actor_name, e.ip, e.owner_name) for e in entries} == {
        (admin_user, admin_user.username, "192.0.2.90", "alice")}


def test_admin_bulk_user_deletion_names_the_staff_member(admin_user, alice, bob, alice_logins,
                                                         bob_login):
    client = signed_in(admin_user)
    response = client.post(
        "/admin/auth/user/",
        {"action": "delete_selected", "_selected_action": [alice.pk, bob.pk], "post": "yes"},
        REMOTE_ADDR="192.0.2.91",
    )
    assert response.status_code == 302
    entries = deletions()
    assert sorted(e.owner_name for e in entries) == ["alice", "alice", "bob"]
    assert {(e.actor, e.ip) for e in entries} == {(admin_user, "192.0.2.91")}
