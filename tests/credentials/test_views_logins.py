"""The customer's Logins pages: every action, its audit entry, its message, CSRF."""
import logging
import re

import pytest
from django.contrib.auth.hashers import check_password
from django.contrib.messages import get_messages
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from credentials import services
from credentials.models import FEATURES, AuditEntry, Login

from .conftest import signed_in

pytestmark = pytest.mark.django_db


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def shown_password(html: str) -> str:
    match = re.search(r'<code id="new-password" class="password">([^<]+)</code>', html)
    assert match, "no password on the page"
    return match.group(1)


def once_token(client, url: str) -> str:
    """The one-time token of the form at ``url`` (create or reset)."""
    html = client.get(url).content.decode()
    match = re.search(r'name="once" value="([^"]+)"', html)
    assert match, "no one-time token in the form"
    return match.group(1)


def stored_sessions() -> str:
    """Everything every session row holds, decoded: where a password must never be."""
    return repr([s.get_decoded() for s in Session.objects.all()]) + repr(
        list(Session.objects.values_list("session_data", flat=True)))


def test_logins_page_shows_each_login_with_its_features_as_columns(alice_client, alice):
    services.create_login(alice, features=["clicktracking", "inlinecss"], description="shop")
    other, _ = services.create_login(alice, features=[], description="backups")
    services.set_enabled(other, False, actor=alice)
    response = alice_client.get(reverse("logins"))
    assert response.status_code == 200
    html = response.content.decode()
    for _, label, _ in FEATURES:
        assert label in html
    cells = re.findall(r'data-feature="(\w+)">\s*<span class="pill (on|off)"', html)
    # Newest first: "backups" has every feature off, "shop" has two on.
    assert cells[:5] == [(name, "off") for name, _, _ in FEATURES]
    assert dict(cells[5:]) == {"clicktracking": "on", "openstracking": "off",
                               "preventscam": "off", "bouncetracking": "off", "inlinecss": "on"}
    assert "disabled" in html and "never" in html
    assert html.index(other.username) < html.index("shop")


def test_logins_page_lists_only_own_logins(alice_client, alice_login, bob_login):
    html = alice_client.get(reverse("logins")).content.decode()
    assert alice_login.username in html
    assert bob_login.username not in html


def test_create_form_shows_feature_help_texts(alice_client):
    html = alice_client.get(reverse("login_create")).content.decode()
    for name, label, help_text in FEATURES:
        assert f'name="{name}"' in html
        assert label in html
        assert escape(help_text) in html
    assert "signed tracking URL that records the click" in html
    assert "media queries stay in &lt;style&gt;" in html


def test_create_shows_the_password_exactly_once(alice_client, alice):
    url = reverse("login_create")
    token = once_token(alice_client, url)
    response = alice_client.post(
        url,
        {"description": "newsletter", "clicktracking": "on", "bouncetracking": "on",
         "once": token},
        REMOTE_ADDR="198.51.100.4",
    )
    login = Login.objects.get(owner=alice)
    # The password is in the answer to the POST itself: no redirect, nothing to fetch later.
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert login.enabled_features() == ["clicktracking", "bouncetracking"]
    assert login.description == "newsletter"
    password = shown_password(response.content.decode())
    assert len(password) >= 24
    assert check_password(password, login.password_hash)
    assert services.authenticate(login.username, password) == login
    assert f"Login {login.username} created." in response.content.decode()

    # Stored nowhere readable: no session row holds it, nor the login row, nor the audit log.
    assert password not in stored_sessions()
    assert password not in repr(list(Login.objects.values()))
    assert password not in repr(list(AuditEntry.objects.values()))

    # A GET of the same URL (back, address bar) shows the empty form, not the password.
    again = alice_client.get(url)
    assert again.status_code == 200
    assert password not in again.content.decode()
    assert 'id="new-password"' not in again.content.decode()

    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor, entry.ip) == ("created", alice, "198.51.100.4")
    assert entry.features_after["bouncetracking"] is True


def test_reloading_the_password_page_creates_no_second_login(alice_client, alice):
    url = reverse("login_create")
    data = {"description": "once", "inlinecss": "on", "once": once_token(alice_client, url)}
    first = alice_client.post(url, data)
    password = shown_password(first.content.decode())
    # A browser reload re-POSTs the same form, token and all.
    reload = alice_client.post(url, data, follow=True)
    html = reload.content.decode()
    assert Login.objects.filter(owner=alice).count() == 1
    assert 'id="new-password"' not in html and password not in html
    assert "sent already" in html and "shown once and is not stored" in html
    assert list(AuditEntry.objects.values_list("action", flat=True)) == ["created"]


def test_create_without_a_form_token_creates_nothing(alice_client, alice):
    response = alice_client.post(reverse("login_create"), {"description": "x", "once": "forged"})
    assert response.status_code == 302
    assert not Login.objects.exists()


def test_invalid_form_keeps_its_token_for_the_corrected_submission(alice_client, alice):
    url = reverse("login_create")
    token = once_token(alice_client, url)
    bad = alice_client.post(url, {"description": "x" * 201, "once": token})
    assert bad.status_code == 200 and f'value="{token}"' in bad.content.decode()
    good = alice_client.post(url, {"description": "ok", "once": token})
    assert good.status_code == 200 and 'id="new-password"' in good.content.decode()
    assert Login.objects.filter(owner=alice).count() == 1


def test_no_password_in_any_log_line(alice_client, alice, caplog):
    caplog.set_level(logging.DEBUG)
    url = reverse("login_create")
    created = alice_client.post(url, {"description": "logs", "once": once_token(alice_client, url)})
    first = shown_password(created.content.decode())
    login = Login.objects.get(owner=alice)
    reset_url = reverse("login_reset", args=[login.pk])
    reset = alice_client.post(reset_url, {"once": once_token(alice_client, reset_url)})
    second = shown_password(reset.content.decode())
    audit_lines = [r.getMessage() for r in caplog.records if r.name == "credentials.audit"]
    assert audit_lines == [f"login {login.username} of alice: created by alice from 127.0.0.1",
                           f"login {login.username} of alice: password_reset by alice "
                           "from 127.0.0.1"]
    logged = "\n".join(r.getMessage() + repr(r.args) + repr(r.__dict__) for r in caplog.records)
    assert first not in logged and second not in logged
    assert login.password_hash not in logged


def test_create_with_too_long_description_shows_error_next_to_field(alice_client):
    url = reverse("login_create")
    token = once_token(alice_client, url)
    response = alice_client.post(url, {"description": "x" * 201, "once": token})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="field has-error"' in html
    assert 'id="id_description-error"' in html
    assert "at most 200 characters" in html
    assert not Login.objects.exists()


def test_edit_changes_description_and_features_with_audit(alice_client, alice, alice_login):
    url = reverse("login_edit", args=[alice_login.pk])
    page = alice_client.get(url).content.decode()
    assert 'value="shop"' in page
    assert re.search(r'name="clicktracking"[^>]*checked', page)
    response = alice_client.post(
        url, {"description": "shop orders", "openstracking": "on"}, REMOTE_ADDR="203.0.113.9"
    )
    assert response.status_code == 302
    assert messages_of(response) == [f"Login {alice_login.username} saved."]
    alice_login.refresh_from_db()
    assert alice_login.description == "shop orders"
    assert alice_login.enabled_features() == ["openstracking"]
    changes = AuditEntry.objects.exclude(action="created").order_by("id")
    assert [e.action for e in changes] == ["description_changed", "features_changed"]
    assert all(e.ip == "203.0.113.9" and e.actor == alice for e in changes)
    assert changes[1].features_before["clicktracking"] is True
    assert changes[1].features_after == {**changes[1].features_before,
                                         "clicktracking": False, "openstracking": True}


def test_edit_without_change_writes_nothing(alice_client, alice_login):
    response = alice_client.post(
        reverse("login_edit", args=[alice_login.pk]),
        {"description": "shop", "clicktracking": "on"},
    )
    assert messages_of(response) == [f"Nothing changed on {alice_login.username}."]
    assert list(AuditEntry.objects.values_list("action", flat=True)) == ["created"]


def test_disable_and_enable(alice_client, alice, alice_login):
    url = reverse("login_set_enabled", args=[alice_login.pk])
    response = alice_client.post(url, {"enabled": "false"})
    assert response.status_code == 302
    assert "disabled" in messages_of(response)[0]
    alice_login.refresh_from_db()
    assert alice_login.enabled is False
    response = alice_client.post(url, {"enabled": "true"})
    assert "enabled: it can send again" in messages_of(response)[-1]
    alice_login.refresh_from_db()
    assert alice_login.enabled is True
    actions = list(AuditEntry.objects.order_by("id").values_list("action", "actor"))
    assert actions == [("created", alice.pk), ("disabled", alice.pk), ("enabled", alice.pk)]


def test_enabled_needs_a_valid_value_and_post(alice_client, alice_login):
    url = reverse("login_set_enabled", args=[alice_login.pk])
    assert alice_client.post(url, {"enabled": "maybe"}).status_code == 400
    assert alice_client.get(url).status_code == 405
    alice_login.refresh_from_db()
    assert alice_login.enabled is True


def test_reset_password_confirms_then_shows_new_password_once(alice_client, alice_login):
    old_hash = alice_login.password_hash
    url = reverse("login_reset", args=[alice_login.pk])
    confirm = alice_client.get(url)
    assert confirm.status_code == 200
    assert "stops working" in confirm.content.decode()
    alice_login.refresh_from_db()
    assert alice_login.password_hash == old_hash  # a GET changes nothing

    token = re.search(r'name="once" value="([^"]+)"', confirm.content.decode()).group(1)
    page = alice_client.post(url, {"once": token}, REMOTE_ADDR="192.0.2.33")
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    password = shown_password(page.content.decode())
    alice_login.refresh_from_db()
    assert alice_login.password_hash != old_hash
    assert services.authenticate(alice_login.username, password) == alice_login
    assert password not in stored_sessions()

    # A GET of the URL asks again; a reload (re-POST) resets nothing and shows nothing.
    assert password not in alice_client.get(url).content.decode()
    new_hash = alice_login.password_hash
    reload = alice_client.post(url, {"once": token}, follow=True)
    assert 'id="new-password"' not in reload.content.decode()
    assert "sent already" in reload.content.decode()
    alice_login.refresh_from_db()
    assert alice_login.password_hash == new_hash
    entry = AuditEntry.objects.latest("id")
    assert (entry.action, entry.ip) == ("password_reset", "192.0.2.33")
    assert password not in repr(entry.details)
    assert AuditEntry.objects.filter(action="password_reset").count() == 1


def test_the_old_password_page_url_is_gone(alice_client, alice_login):
    response = alice_client.get(f"/logins/{alice_login.pk}/password/")
    assert response.status_code == 404


def test_delete_asks_then_deletes_with_audit(alice_client, alice, alice_login):
    url = reverse("login_delete", args=[alice_login.pk])
    confirm = alice_client.get(url)
    assert confirm.status_code == 200
    assert "cannot be restored" in confirm.content.decode()
    assert Login.objects.filter(pk=alice_login.pk).exists()
    response = alice_client.post(url, REMOTE_ADDR="192.0.2.44")
    assert response.status_code == 302
    assert messages_of(response) == [f"Login {alice_login.username} deleted."]
    assert not Login.objects.filter(pk=alice_login.pk).exists()
    entry = AuditEntry.objects.latest("id")
    assert (entry.action, entry.actor, entry.ip, entry.login_username) == (
        "deleted", alice, "192.0.2.44", alice_login.username)
    assert entry.features_before["clicktracking"] is True


def test_a_second_delete_of_the_same_login_is_404_without_an_audit_entry(alice_client,
                                                                         alice_login):
    url = reverse("login_delete", args=[alice_login.pk])
    assert alice_client.post(url).status_code == 302
    assert alice_client.post(url).status_code == 404
    assert AuditEntry.objects.filter(action="deleted").count() == 1


def test_a_login_deleted_by_a_concurrent_request_is_not_deleted_or_audited_twice(alice,
                                                                              alice_login):
    # Two quick deletes: both requests found the row; the first deletes it before the second
    # gets to the delete. The second holds a stale copy and must write nothing (an audit entry
    # naming a deleted row breaks its foreign key on commit).
    stale = Login.objects.get(pk=alice_login.pk)
    assert services.delete_login(alice_login, actor=alice) is True
    assert services.delete_login(stale, actor=alice) is False
    assert AuditEntry.objects.filter(action="deleted").count() == 1
    assert not Login.objects.filter(pk=alice_login.pk).exists()


def _waiting_on_a_lock() -> bool:
    from django.db import connection

    if connection.vendor != "postgresql":
        return False  # SQLite shows no waiters: the caller's timeout stands in
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                       "AND datname = current_database()")
        return cursor.fetchone()[0] > 0


@pytest.mark.django_db(transaction=True)
def test_two_overlapping_delete_requests_give_one_delete_and_one_404(alice):
    import threading
    import time

    from django.db import connection, transaction

    login, _ = services.create_login(alice)
    url = reverse("login_delete", args=[login.pk])
    client = signed_in(alice)  # its session is written now, not while the first one locks
    first_deleted, release, answers = threading.Event(), threading.Event(), []

    def first_request():
        # The first request's transaction: row deleted and audited, not yet committed.
        try:
            with transaction.atomic():
                services.delete_login(Login.objects.get(pk=login.pk), actor=alice)
                first_deleted.set()
                release.wait(20)
        finally:
            connection.close()

    def second_request():
        try:
            answers.append(client.post(url).status_code)
        finally:
            connection.close()

    first = threading.Thread(target=first_request)
    first.start()
    assert first_deleted.wait(20)
    second = threading.Thread(target=second_request)
    second.start()
    # The second request still sees the row and then waits for the first one's lock.
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and not _waiting_on_a_lock():
        time.sleep(0.02)
    release.set()
    first.join(30)
    second.join(30)
    assert answers == [404]
    assert AuditEntry.objects.filter(action="deleted").count() == 1


def test_create_and_delete_refuse_posts_without_csrf_token(alice):
    client = signed_in(alice, enforce_csrf_checks=True)
    response = client.post(reverse("login_create"), {"description": "x", "inlinecss": "on"})
    assert response.status_code == 403
    assert not Login.objects.exists()

    login, _ = services.create_login(alice)
    response = client.post(reverse("login_delete", args=[login.pk]))
    assert response.status_code == 403
    assert client.post(reverse("login_set_enabled", args=[login.pk]),
                       {"enabled": "false"}).status_code == 403
    assert client.post(reverse("login_reset", args=[login.pk])).status_code == 403
    assert Login.objects.filter(pk=login.pk, enabled=True).exists()


def test_create_and_delete_work_with_the_csrf_token_from_the_form(alice):
    client = signed_in(alice, enforce_csrf_checks=True)
    form = client.get(reverse("login_create")).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    once = re.search(r'name="once" value="([^"]+)"', form).group(1)
    response = client.post(reverse("login_create"),
                           {"csrfmiddlewaretoken": token, "inlinecss": "on", "once": once})
    assert response.status_code == 200
    login = Login.objects.get()
    assert login.enabled_features() == ["inlinecss"]
    response = client.post(reverse("login_delete", args=[login.pk]),
                           {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert not Login.objects.exists()


def test_ip_comes_from_remote_addr_not_forwarded_header(alice_client, alice_login, settings):
    url = reverse("login_set_enabled", args=[alice_login.pk])
    alice_client.post(url, {"enabled": "false"}, REMOTE_ADDR="192.0.2.1",
                      HTTP_X_FORWARDED_FOR="6.6.6.6")
    assert AuditEntry.objects.latest("id").ip == "192.0.2.1"
    settings.TRUST_X_FORWARDED_FOR = True
    alice_client.post(url, {"enabled": "true"}, REMOTE_ADDR="10.0.0.2",
                      HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.20")
    assert AuditEntry.objects.latest("id").ip == "198.51.100.20"


def test_nav_has_logins_connect_preview_and_audit_only_for_staff(alice_client, staff_client):
    html = alice_client.get(reverse("logins")).content.decode()
    assert 'href="/connect/"' in html and 'href="/preview/"' in html
    assert 'href="/audit/"' not in html
    assert 'action="/signout/"' in html
    assert 'href="/audit/"' in staff_client.get(reverse("logins")).content.decode()


def test_static_css_is_served_locally(alice_client):
    html = alice_client.get(reverse("logins")).content.decode()
    assert "http://" not in re.sub(r'href="http://[^"]*preview', "", html.split("<body")[0])
    assert "https://" not in html.split("<body")[0]
    css = Client().get("/static/css/site.css")
    assert css.status_code == 200
    assert b"@media (max-width" in b"".join(css.streaming_content)


@pytest.mark.parametrize("name, data", [
    ("login_edit", {"description": "x"}),
    ("login_set_enabled", {"enabled": "false"}),
    ("login_reset", None),
])
def test_a_login_deleted_after_the_view_found_it_is_404_not_500(
        alice_client, alice, alice_login, monkeypatch, name, data):
    # The race: another request deletes the row between the view's lookup and the service's
    # locked re-read. Reproduced by handing the view a copy of a row that is gone.
    from credentials import views

    stale = Login.objects.get(pk=alice_login.pk)
    monkeypatch.setattr(views, "_own_login", lambda request, login_id: stale)
    url = reverse(name, args=[alice_login.pk])
    if data is None:
        data = {"once": once_token(alice_client, url)}
    services.delete_login(alice_login, actor=alice)
    entries = AuditEntry.objects.count()
    response = alice_client.post(url, data)
    assert response.status_code == 404
    assert AuditEntry.objects.count() == entries  # nothing written for the vanished row
