"""/api/v1/suppressions/: list (own, filters), add (source api, audited with the key),
retrieve, delete; another owner's entry is 404."""
import pytest

from relay import suppression
from relay.models import Suppression, SuppressionAudit

pytestmark = pytest.mark.django_db


def test_add_list_delete(api, alice):
    r = api.post("/api/v1/suppressions/", {"address": "Ann@Example.com", "detail": "asked"})
    assert r.status_code == 201, r.content
    entry = r.json()
    assert entry["address"] == "ann@example.com" and entry["reason"] == "manual"
    assert entry["source"] == "api" and entry["active"] is True and entry["expires_at"] is None
    assert suppression.is_suppressed(alice.pk, ["ann@example.com"])
    change = SuppressionAudit.objects.get()
    assert change.action == "added" and change.actor == alice
    assert change.actor_name.startswith("alice (API key #")
    assert change.details["api_key"]["id"] == api.key.pk
    listed = api.get("/api/v1/suppressions/").json()["results"]
    assert [e["id"] for e in listed] == [entry["id"]]
    assert api.get(f"/api/v1/suppressions/{entry['id']}/").json() == entry
    assert api.get("/api/v1/suppressions/", {"q": "nobody"}).json()["results"] == []
    assert api.delete(f"/api/v1/suppressions/{entry['id']}/").status_code == 204
    assert not suppression.is_suppressed(alice.pk, ["ann@example.com"])
    assert SuppressionAudit.objects.order_by("id").last().action == "removed"
    assert api.delete(f"/api/v1/suppressions/{entry['id']}/").status_code == 404


def test_reason_expiry_and_state_filter(api):
    r = api.post("/api/v1/suppressions/", {"address": "old@example.com",
                                           "expires_at": "2001-01-01T00:00:00Z"})
    assert r.status_code == 201 and r.json()["active"] is False
    api.post("/api/v1/suppressions/", {"address": "hb@example.com", "reason": "hard_bounce"})
    active = api.get("/api/v1/suppressions/").json()["results"]
    assert [e["address"] for e in active] == ["hb@example.com"]
    assert active[0]["expires_at"] is not None  # the reason's default
    expired = api.get("/api/v1/suppressions/", {"state": "expired"}).json()["results"]
    assert [e["address"] for e in expired] == ["old@example.com"]
    assert len(api.get("/api/v1/suppressions/", {"state": "all"}).json()["results"]) == 2
    assert api.get("/api/v1/suppressions/", {"state": "gone"}).status_code == 400


@pytest.mark.parametrize("body,field", [
    ({"address": "not an address"}, "address"), ({}, "address"),
    ({"address": "a@example.com", "reason": "dislike"}, "reason"),
    ({"address": "a@example.com", "expires_at": "soon"}, "expires_at"),
])
def test_bad_adds_are_400(api, body, field):
    r = api.post("/api/v1/suppressions/", body)
    assert r.status_code == 400 and field in r.json()
    assert not Suppression.objects.exists()


def test_another_owner_s_entries_are_invisible(api, bob):
    theirs = suppression.add(bob.pk, "x@example.com", "manual", actor=bob)
    assert api.get("/api/v1/suppressions/").json()["results"] == []
    assert api.get(f"/api/v1/suppressions/{theirs.pk}/").status_code == 404
    assert api.delete(f"/api/v1/suppressions/{theirs.pk}/").status_code == 404
    assert Suppression.objects.filter(pk=theirs.pk).exists()


def test_paths_work_without_their_trailing_slash(api):
    # A POST to a path without its slash would otherwise be redirected (losing its body).
    r = api.post("/api/v1/suppressions", {"address": "slash@example.com"})
    assert r.status_code == 201
    assert api.get(f"/api/v1/suppressions/{r.json()['id']}").status_code == 200
