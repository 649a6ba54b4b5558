"""The Suppressions page through Django's test client: each customer sees and changes only their
own list (another's entry is 404), staff see all and name the customer, every form needs its
CSRF token, every change is audited, and a CSV export imports back as the same list."""
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from relay import suppression
from relay.models import Suppression, SuppressionAudit

pytestmark = pytest.mark.django_db
R = Suppression.Reason


def signed_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def listed(response) -> list[str]:
    return re.findall(r'class="suppression-row" data-address="([^"]+)"',
                      response.content.decode())


def test_a_customer_sees_only_their_own_list(alice, bob):
    suppression.add(alice.pk, "a@example.org", R.MANUAL, actor=alice)
    suppression.record_complaint(bob.pk, "b@example.org")
    page = signed_in(alice).get("/suppressions/")
    assert page.status_code == 200 and listed(page) == ["a@example.org"]
    assert b'href="/suppressions/"' in page.content  # in the nav
    export = signed_in(alice).get("/suppressions/export.csv")
    assert b"a@example.org" in export.content and b"b@example.org" not in export.content
    # A customer cannot widen the search to another customer.
    assert listed(signed_in(alice).get("/suppressions/?customer=bob")) == ["a@example.org"]


def test_another_customer_s_entry_is_not_found(alice, bob):
    theirs = suppression.record_complaint(bob.pk, "b@example.org")
    client = signed_in(alice)
    assert client.get(f"/suppressions/{theirs.pk}/remove/").status_code == 404
    assert client.post(f"/suppressions/{theirs.pk}/remove/").status_code == 404
    assert client.get("/suppressions/999999/remove/").status_code == 404
    assert Suppression.objects.filter(pk=theirs.pk).exists()
    assert not SuppressionAudit.objects.exists()


def test_signed_out_visitors_are_sent_to_sign_in(alice):
    entry = suppression.add(alice.pk, "a@example.org", R.MANUAL, actor=alice)
    for url in ["/suppressions/", "/suppressions/export.csv",
                f"/suppressions/{entry.pk}/remove/"]:
        response = Client().get(url)
        assert response.status_code == 302 and response["Location"].startswith("/signin/")
    assert Client().post("/suppressions/add/", {"address": "x@example.org"}).status_code == 302
    assert Suppression.objects.count() == 1


def test_add_and_remove_with_confirmation_are_audited(alice):
    client = signed_in(alice, REMOTE_ADDR="192.0.2.5")
    response = client.post("/suppressions/add/", {"address": " Carol@Example.org ",
                                                  "detail": "asked us to stop"})
    assert response.status_code == 302 and response["Location"] == "/suppressions/"
    entry = Suppression.objects.get()
    assert (entry.owner, entry.address, entry.reason, entry.detail, entry.source,
            entry.expires_at) == (alice, "carol@example.org", "manual", "asked us to stop",
                                  "dashboard", None)
    page = client.get(f"/suppressions/{entry.pk}/remove/")
    assert page.status_code == 200 and b"Remove carol@example.org?" in page.content
    assert Suppression.objects.exists()  # the GET only asks
    assert client.post(f"/suppressions/{entry.pk}/remove/").status_code == 302
    assert not Suppression.objects.exists()
    got = [(a.action, a.actor_name, a.owner_name, a.address, a.ip)
           for a in SuppressionAudit.objects.order_by("id")]
    assert got == [("added", "alice", "alice", "carol@example.org", "192.0.2.5"),
                   ("removed", "alice", "alice", "carol@example.org", "192.0.2.5")]
    changes = client.get("/suppressions/").content.decode()
    assert 'id="changes"' in changes and "removed" in changes


def test_a_bad_address_is_refused_with_the_page_and_its_error(alice):
    response = signed_in(alice).post("/suppressions/add/", {"address": "not an address"})
    assert response.status_code == 400
    assert b"Enter an email address" in response.content
    assert not Suppression.objects.exists()


def test_every_form_needs_its_csrf_token(alice):
    entry = suppression.add(alice.pk, "a@example.org", R.MANUAL, actor=alice)
    client = signed_in(alice, enforce_csrf_checks=True)
    upload = SimpleUploadedFile("list.csv", b"x@example.org\n", "text/csv")
    assert client.post("/suppressions/add/", {"address": "x@example.org"}).status_code == 403
    assert client.post(f"/suppressions/{entry.pk}/remove/").status_code == 403
    assert client.post("/suppressions/import/", {"file": upload}).status_code == 403
    assert list(Suppression.objects.values_list("address", flat=True)) == ["a@example.org"]
    page = client.get("/suppressions/").content.decode()
    assert page.count('name="csrfmiddlewaretoken"') >= 3  # add, import, sign out
    confirm = client.get(f"/suppressions/{entry.pk}/remove/").content.decode()
    assert 'name="csrfmiddlewaretoken"' in confirm


def test_csv_export_and_import_round_trip(alice, bob):
    suppression.record_complaint(alice.pk, "c@example.org", detail="=cmd|' /C calc'!A0")
    suppression.record_bounce(alice.pk, "h@example.org", "hard", detail="550 5.1.1, gone")
    suppression.add(alice.pk, "m@example.org", R.MANUAL, actor=alice)
    export = signed_in(alice).get("/suppressions/export.csv")
    assert export["Content-Type"] == "text/csv; charset=utf-8"
    assert export["Content-Disposition"].startswith('attachment; filename="suppressions-')
    upload = SimpleUploadedFile("list.csv", export.content, "text/csv")
    response = signed_in(bob).post("/suppressions/import/", {"file": upload}, follow=True)
    assert b"Imported: 3 addresses added, 0 already suppressed." in response.content

    def entries(owner):
        return sorted(Suppression.objects.filter(owner=owner).values_list(
            "address", "reason", "detail", "expires_at"))

    assert entries(bob) == entries(alice)
    assert sorted(SuppressionAudit.objects.filter(owner=bob).values_list(
        "action", "actor_name", "address")) == [("imported", "bob", a) for a in
                                                ("c@example.org", "h@example.org",
                                                 "m@example.org")]


def test_import_reports_bad_rows_and_refuses_what_is_not_text(alice):
    client = signed_in(alice)
    upload = SimpleUploadedFile("list.csv", b"ok@example.org\nnope\n", "text/csv")
    response = client.post("/suppressions/import/", {"file": upload}, follow=True)
    assert b"1 row(s) skipped: line 2: not an email address" in response.content
    upload = SimpleUploadedFile("list.csv", b"\xff\xfe\x00bad", "text/csv")
    response = client.post("/suppressions/import/", {"file": upload})
    assert response.status_code == 400 and b"not UTF-8 text" in response.content
    assert list(Suppression.objects.values_list("address", flat=True)) == ["ok@example.org"]


def test_staff_see_every_list_filter_by_customer_and_act_for_one(alice, bob, staff):
    suppression.add(alice.pk, "a@example.org", R.MANUAL, actor=alice)
    theirs = suppression.record_complaint(bob.pk, "b@example.org")
    client = signed_in(staff)
    assert sorted(listed(client.get("/suppressions/"))) == ["a@example.org", "b@example.org"]
    assert listed(client.get("/suppressions/?customer=bob")) == ["b@example.org"]
    assert client.post("/suppressions/add/", {"address": "x@example.org",
                                              "customer": "bob"}).status_code == 302
    response = client.post("/suppressions/add/", {"address": "y@example.org",
                                                  "customer": "nobody"})
    assert response.status_code == 400 and b"No customer with this username." in response.content
    assert client.post(f"/suppressions/{theirs.pk}/remove/").status_code == 302
    assert sorted(Suppression.objects.values_list("owner__username", "address")) == [
        ("alice", "a@example.org"), ("bob", "x@example.org")]
    assert sorted(SuppressionAudit.objects.filter(actor=staff).values_list(
        "actor_name", "owner_name", "action", "address")) == [
        ("auditor", "bob", "added", "x@example.org"),
        ("auditor", "bob", "removed", "b@example.org")]
    # A customer's page shows the changes to their own list only.
    own = signed_in(alice).get("/suppressions/").content.decode()
    assert 'id="changes"' in own and "a@example.org" in own
    assert "x@example.org" not in own and "b@example.org" not in own


def test_search_and_pages(alice):
    for i in range(55):
        suppression.add(alice.pk, f"user{i:02}@example.org", R.MANUAL, actor=alice)
    suppression.record_complaint(alice.pk, "angry@example.net")
    client = signed_in(alice)
    first = client.get("/suppressions/")
    assert len(listed(first)) == 50 and b"Page 1 of 2" in first.content
    assert len(listed(client.get("/suppressions/?page=2"))) == 6
    assert listed(client.get("/suppressions/?q=EXAMPLE.NET")) == ["angry@example.net"]
    assert listed(client.get("/suppressions/?reason=complaint")) == ["angry@example.net"]
    assert client.get("/suppressions/?reason=bogus").status_code == 400
    assert client.get("/suppressions/export.csv?reason=bogus").status_code == 400
