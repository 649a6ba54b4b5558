"""Django admin: logins change only through services (audited, no hash); audit log read-only."""
from html.parser import HTMLParser

import pytest

from credentials.models import AuditEntry, Login

from .conftest import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(admin_user):
    return signed_in(admin_user)


def test_login_change_page_shows_no_hash(admin_client, alice_login):
    response = admin_client.get(f"/admin/credentials/login/{alice_login.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert alice_login.password_hash not in html
    assert "password_hash" not in html
    assert 'name="description"' in html and 'name="clicktracking"' in html
    assert 'name="username"' not in html and 'name="owner"' not in html


def test_login_changes_in_admin_are_audited(admin_client, admin_user, alice_login):
    response = admin_client.post(
        f"/admin/credentials/login/{alice_login.pk}/change/",
        {"description": "via admin", "openstracking": "on", "_save": "Save"},
        REMOTE_ADDR="192.0.2.77",
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    alice_login.refresh_from_db()
    assert alice_login.description == "via admin"
    assert alice_login.enabled is False
    assert alice_login.enabled_features() == ["openstracking"]
    entries = AuditEntry.objects.exclude(action="created").order_by("id")
    assert [e.action for e in entries] == ["description_changed", "features_changed", "disabled"]
    assert {(e.actor, e.ip) for e in entries} == {(admin_user, "192.0.2.77")}


def test_logins_cannot_be_added_in_admin(admin_client):
    assert admin_client.get("/admin/credentials/login/add/").status_code == 403


def test_login_delete_in_admin_is_audited(admin_client, admin_user, alice_login, bob_login):
    response = admin_client.post(f"/admin/credentials/login/{alice_login.pk}/delete/",
                                 {"post": "yes"})
    assert response.status_code == 302
    response = admin_client.post("/admin/credentials/login/", {
        "action": "delete_selected", "_selected_action": [bob_login.pk], "post": "yes"})
    assert response.status_code == 302
    assert not Login.objects.exists()
    deleted = AuditEntry.objects.filter(action="deleted")
    assert {e.login_username for e in deleted} == {alice_login.username, bob_login.username}
    assert {e.actor for e in deleted} == {admin_user}


def test_audit_entries_are_read_only_in_admin(admin_client, alice_login):
    entry = AuditEntry.objects.get()
    listing = admin_client.get("/admin/credentials/auditentry/")
    assert listing.status_code == 200
    assert alice_login.username in listing.content.decode()
    assert admin_client.get("/admin/credentials/auditentry/add/").status_code == 403
    view = admin_client.get(f"/admin/credentials/auditentry/{entry.pk}/change/")
    assert view.status_code == 200  # view permission only: no inputs, no save button
    assert 'name="_save"' not in view.content.decode()
    assert admin_client.post(f"/admin/credentials/auditentry/{entry.pk}/change/",
                             {"action": "deleted"}).status_code == 403
    assert admin_client.post(f"/admin/credentials/auditentry/{entry.pk}/delete/",
                             {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.get().action == "created"


def test_admin_offers_no_password_reset_action(admin_client, alice_login):
    # Passwords are reset in the dashboard, which shows them once; admin messages would carry
    # them in a cookie.
    html = admin_client.get("/admin/credentials/login/").content.decode()
    assert alice_login.username in html
    assert "reset" not in html.lower()


class _Controls(HTMLParser):
    """Names of the form controls a browser would see: html.parser, like a browser, reads
    everything after <style> or <script> as that element's text until its end tag."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("input", "button", "select", "textarea") and attrs.get("name"):
            self.names.append(attrs["name"])
        if tag == "a" and (attrs.get("href") or "").endswith("/delete/"):
            self.names.append("delete-link")


def test_login_change_page_keeps_its_save_and_delete_controls(admin_client, alice_login):
    html = admin_client.get(f"/admin/credentials/login/{alice_login.pk}/change/").content
    parser = _Controls()
    parser.feed(html.decode())
    parser.close()
    assert {"inlinecss", "_save", "_continue", "delete-link"} <= set(parser.names)
    # The help text reads as text: its <style> is escaped, not an element.
    assert "Copies &lt;style&gt; rules" in html.decode()
