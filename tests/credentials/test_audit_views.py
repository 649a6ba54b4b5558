"""The staff audit area: all logins with filters and CSV export; the audit log with filters."""
import csv
import datetime as dt
import io
import re

import pytest
from django.utils import timezone

from credentials import services
from credentials.models import FEATURE_NAMES, AuditEntry
from credentials.reports import CSV_HEADER

from .test_views_logins import once_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet(alice, bob):
    a1, _ = services.create_login(alice, features=["clicktracking", "inlinecss"], description="a1")
    a2, _ = services.create_login(alice, features=["openstracking"], description="a2")
    b1, _ = services.create_login(bob, features=["clicktracking"], description="=HYPERLINK(1)")
    services.set_enabled(b1, False, actor=bob)
    return a1, a2, b1


def usernames_in(html: str) -> set[str]:
    return set(re.findall(r'<code class="username">(smtp-\w+)</code>', html))


def read_csv(response) -> list[dict]:
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_all_logins_of_all_customers(staff_client, fleet):
    html = staff_client.get("/audit/").content.decode()
    assert usernames_in(html) == {login.username for login in fleet}
    assert "3 logins" in html


def test_filter_by_feature(staff_client, fleet):
    a1, a2, b1 = fleet
    html = staff_client.get("/audit/", {"features": ["clicktracking"]}).content.decode()
    assert usernames_in(html) == {a1.username, b1.username}
    both = {"features": ["clicktracking", "inlinecss"]}
    html = staff_client.get("/audit/", both).content.decode()
    assert usernames_in(html) == {a1.username}


def test_filter_by_customer_and_state(staff_client, fleet):
    a1, a2, b1 = fleet
    assert usernames_in(staff_client.get("/audit/", {"customer": "Alice"}).content.decode()) == {
        a1.username, a2.username}
    assert usernames_in(staff_client.get("/audit/", {"state": "disabled"}).content.decode()) == {
        b1.username}
    nobody = staff_client.get("/audit/", {"customer": "nobody"}).content.decode()
    assert usernames_in(nobody) == set()


def test_bad_filter_is_400_with_its_error_and_no_rows(staff_client, fleet):
    # The same answer as the CSV export of the same filter: a bad request, not "no match".
    response = staff_client.get("/audit/", {"features": ["teleport"]})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Select a valid choice" in html
    assert usernames_in(html) == set()
    assert staff_client.get("/audit/logins.csv", {"features": ["teleport"]}).status_code == 400


def test_csv_export_has_every_login_and_feature(staff_client, fleet):
    a1, a2, b1 = fleet
    rows = read_csv(staff_client.get("/audit/logins.csv"))
    assert list(rows[0]) == CSV_HEADER
    by_name = {row["username"]: row for row in rows}
    assert set(by_name) == {a1.username, a2.username, b1.username}
    assert by_name[a1.username] == {
        **by_name[a1.username], "customer": "alice", "description": "a1", "enabled": "yes",
        "clicktracking": "on", "openstracking": "off", "preventscam": "off",
        "bouncetracking": "off", "inlinecss": "on", "last_used": "",
    }
    assert by_name[b1.username]["enabled"] == "no"
    # A description that a spreadsheet would run as a formula is exported as text.
    assert by_name[b1.username]["description"] == "'=HYPERLINK(1)"
    assert set(FEATURE_NAMES) <= set(rows[0])


def test_csv_export_uses_the_same_filters(staff_client, fleet):
    a1, a2, b1 = fleet
    page = staff_client.get("/audit/", {"features": "clicktracking", "customer": "alice"})
    assert 'href="/audit/logins.csv?features=clicktracking&amp;customer=alice"' in (
        page.content.decode())
    rows = read_csv(staff_client.get("/audit/logins.csv",
                                     {"features": "clicktracking", "customer": "alice"}))
    assert [row["username"] for row in rows] == [a1.username]


def test_audit_log_shows_every_action_done_through_the_dashboard(alice, alice_client, staff_client):
    alice_client.post("/logins/new/", {"description": "x", "clicktracking": "on",
                                       "once": once_token(alice_client, "/logins/new/")},
                      REMOTE_ADDR="192.0.2.50")
    login = alice.smtp_logins.get()
    alice_client.post(f"/logins/{login.pk}/edit/", {"description": "y", "openstracking": "on"})
    alice_client.post(f"/logins/{login.pk}/enabled/", {"enabled": "false"})
    alice_client.post(f"/logins/{login.pk}/enabled/", {"enabled": "true"})
    reset_url = f"/logins/{login.pk}/reset/"
    alice_client.post(reset_url, {"once": once_token(alice_client, reset_url)})
    alice_client.post(f"/logins/{login.pk}/delete/")
    alice_client.post("/api-keys/", {"name": "deploy", "scope": "write",
                                     "once": once_token(alice_client, "/api-keys/")})
    key = alice.api_keys.get()
    alice_client.post(f"/api-keys/{key.pk}/revoke/")
    expected = {choice for choice, _ in AuditEntry.Action.choices}
    assert set(AuditEntry.objects.values_list("action", flat=True)) == expected

    html = staff_client.get("/audit/log/").content.decode()
    shown = re.findall(r'<tr class="audit-entry" data-action="(\w+)">', html)
    assert shown == ["api_key_revoked", "api_key_created", "deleted", "password_reset",
                     "enabled", "disabled", "features_changed", "description_changed", "created"]
    assert "192.0.2.50" in html
    assert "“x” → “y”" in html
    assert f"“deploy” <code>{key.prefix}…</code> (write)" in html
    assert re.search(r"Click tracking: <span class=\"pill on\">on</span> → "
                     r"<span class=\"pill off\">off</span>", html)


def test_audit_log_filters(alice, bob, staff, staff_client, fleet):
    a1, a2, b1 = fleet
    services.update_login(a1, actor=staff, description="by staff")
    old = AuditEntry.objects.filter(login_username=a2.username).get()
    AuditEntry.objects.filter(pk=old.pk).update(time=timezone.now() - dt.timedelta(days=10))

    def actions(**params):
        html = staff_client.get("/audit/log/", params).content.decode()
        return sorted(re.findall(r'data-action="(\w+)">.*?<code>(smtp-\w+)</code>', html, re.S))

    def rows(**params):
        html = staff_client.get("/audit/log/", params).content.decode()
        return len(re.findall(r'<tr class="audit-entry"', html))

    assert rows() == 5
    assert rows(customer="bob") == 2
    assert rows(login=b1.username) == 2
    assert rows(login=a1.username[5:9]) >= 2
    assert rows(actor="auditor") == 1
    assert rows(action="disabled") == 1
    assert rows(action="created", customer="alice") == 2
    today = timezone.localdate()
    assert rows(date_from=today.isoformat()) == 4
    assert rows(date_to=(today - dt.timedelta(days=5)).isoformat()) == 1
    assert actions(date_to=(today - dt.timedelta(days=5)).isoformat()) == [("created", a2.username)]
    bad = staff_client.get("/audit/log/", {"date_from": today.isoformat(),
                                           "date_to": (today - dt.timedelta(days=1)).isoformat()})
    assert "The end date is before the start date." in bad.content.decode()
    assert bad.status_code == 400 and rows() == 5
    bad = staff_client.get("/audit/log/", {"date_from": "yesterday", "action": "exploded"})
    assert bad.status_code == 400
    html = bad.content.decode()
    assert "Enter a valid date." in html and "Select a valid choice" in html
    assert '<tr class="audit-entry"' not in html


def test_audit_log_is_paginated_and_keeps_filters(alice, staff_client):
    login, _ = services.create_login(alice)
    for i in range(60):
        services.update_login(login, actor=alice, description=f"d{i}")
    first = staff_client.get("/audit/log/", {"customer": "alice"}).content.decode()
    assert first.count('<tr class="audit-entry"') == 50
    assert "Page 1 of 2" in first
    assert 'href="?customer=alice&amp;page=2"' in first
    second = staff_client.get("/audit/log/", {"customer": "alice", "page": 2}).content.decode()
    assert second.count('<tr class="audit-entry"') == 11
    assert 'data-action="created"' in second
    assert staff_client.get("/audit/log/", {"page": "999"}).status_code == 200


def test_all_logins_page_is_paginated_and_keeps_filters(alice, bob, staff_client):
    from credentials.views import AUDIT_PAGE_SIZE

    for _ in range(AUDIT_PAGE_SIZE + 5):
        services.create_login(alice, features=["clicktracking"])
    services.create_login(bob, features=["clicktracking"])
    first = staff_client.get("/audit/", {"features": ["clicktracking"]}).content.decode()
    assert len(usernames_in(first)) == AUDIT_PAGE_SIZE
    assert f"{AUDIT_PAGE_SIZE + 6} logins match" in first and "Page 1 of 2" in first
    assert 'href="?features=clicktracking&amp;page=2"' in first
    # The CSV export still takes every login of the filter, without the page.
    assert 'href="/audit/logins.csv?features=clicktracking"' in first
    second = staff_client.get("/audit/", {"features": ["clicktracking"], "page": 2})
    names = usernames_in(second.content.decode())
    assert len(names) == 6 and not names & usernames_in(first)
    assert staff_client.get("/audit/", {"page": "999"}).status_code == 200
