"""/api/v1/logins/: list, create (password once), retrieve, update, enable/disable, reset
password, delete; another owner's login is 404; every change audited with the key named."""
import pytest

from credentials import services
from credentials.models import AuditEntry, Login

pytestmark = pytest.mark.django_db


def audit(login_id=None):
    entries = AuditEntry.objects.order_by("id")
    return list(entries.filter(login_id=login_id) if login_id else entries)


def test_create_returns_the_password_once_and_audits_with_the_key(api, alice):
    r = api.post("/api/v1/logins/", {"description": "shop", "features": {"clicktracking": True}})
    assert r.status_code == 201
    body = r.json()
    login = Login.objects.get(pk=body["id"], owner=alice)
    assert body["features"]["clicktracking"] is True and body["features"]["inlinecss"] is False
    assert services.verify_password(login, body["password"])
    assert "password" not in api.get(f"/api/v1/logins/{login.pk}/").json()
    entry = audit(login.pk)[-1]
    assert entry.action == "created" and entry.actor == alice
    assert entry.actor_name == f"alice (API key #{api.key.pk} test write)"
    assert entry.details["api_key"] == {"id": api.key.pk, "name": "test write"}


def test_create_disabled(api):
    body = api.post("/api/v1/logins/", {"enabled": False}).json()
    assert body["enabled"] is False
    assert [e.action for e in audit(body["id"])] == ["created", "disabled"]


def test_list_and_retrieve_only_own(api, alice, bob):
    mine, _ = services.create_login(alice)
    theirs, _ = services.create_login(bob)
    listed = [x["id"] for x in api.get("/api/v1/logins/").json()["results"]]
    assert listed == [mine.pk]
    assert api.get(f"/api/v1/logins/{mine.pk}/").json()["username"] == mine.username
    assert api.get(f"/api/v1/logins/{theirs.pk}/").status_code == 404


def test_update_description_features_enabled_audited(api, alice):
    login, _ = services.create_login(alice)
    r = api.patch(f"/api/v1/logins/{login.pk}/", {"description": "new",
                                                  "features": {"openstracking": True},
                                                  "enabled": False})
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["description"] == "new" and body["enabled"] is False
    assert body["features"]["openstracking"] is True
    actions = [e.action for e in audit(login.pk)]
    assert actions == ["created", "description_changed", "features_changed", "disabled"]
    assert all("API key" in e.actor_name for e in audit(login.pk)[1:])
    r = api.put(f"/api/v1/logins/{login.pk}/", {"enabled": True})
    assert r.status_code == 200 and r.json()["enabled"] is True
    # nothing changed: no entry
    before = len(audit())
    assert api.patch(f"/api/v1/logins/{login.pk}/", {"description": "new"}).status_code == 200
    assert len(audit()) == before


@pytest.mark.parametrize("body,field", [
    ({"description": "x" * 201}, "description"),
    ({"features": {"clicktracking": "perhaps"}}, "features"),
    ({"enabled": "sometimes"}, "enabled"),
    ({"features": "all"}, "features"),
])
def test_bad_updates_are_400(api, alice, body, field):
    login, _ = services.create_login(alice)
    r = api.patch(f"/api/v1/logins/{login.pk}/", body)
    assert r.status_code == 400 and field in r.json()


def test_unknown_feature_names_are_ignored_not_500(api, alice):
    login, _ = services.create_login(alice)
    r = api.patch(f"/api/v1/logins/{login.pk}/", {"features": {"teleport": True}})
    assert r.status_code == 200


def test_reset_password(api, alice):
    login, old = services.create_login(alice)
    r = api.post(f"/api/v1/logins/{login.pk}/reset-password/")
    assert r.status_code == 200
    login.refresh_from_db()
    assert services.verify_password(login, r.json()["password"])
    assert not services.verify_password(login, old)
    assert audit(login.pk)[-1].action == "password_reset"


def test_delete(api, alice):
    login, _ = services.create_login(alice)
    assert api.delete(f"/api/v1/logins/{login.pk}/").status_code == 204
    assert not Login.objects.filter(pk=login.pk).exists()
    entry = AuditEntry.objects.filter(login_username=login.username).order_by("id").last()
    assert entry.action == "deleted" and "API key" in entry.actor_name
    assert api.delete(f"/api/v1/logins/{login.pk}/").status_code == 404


def test_another_owner_s_login_cannot_be_changed(api, bob):
    login, password = services.create_login(bob)
    for r in (api.patch(f"/api/v1/logins/{login.pk}/", {"description": "mine now"}),
              api.put(f"/api/v1/logins/{login.pk}/", {"enabled": False}),
              api.post(f"/api/v1/logins/{login.pk}/reset-password/"),
              api.delete(f"/api/v1/logins/{login.pk}/")):
        assert r.status_code == 404
    login.refresh_from_db()
    assert login.description == "" and login.enabled
    assert services.verify_password(login, password)
    assert [e.action for e in audit(login.pk)] == ["created"]
