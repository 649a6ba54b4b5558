"""Who may see and change what: customer A against B on every login URL, staff against customer."""
import re

import pytest
from django.urls import reverse

from credentials import services
from credentials.models import AuditEntry, Login

pytestmark = pytest.mark.django_db

LOGIN_URLS = ["login_edit", "login_set_enabled", "login_reset", "login_delete"]


@pytest.mark.parametrize("name", LOGIN_URLS)
@pytest.mark.parametrize("method", ["get", "post"])
def test_another_customers_login_is_not_found(bob_client, alice_login, name, method):
    before = Login.objects.get(pk=alice_login.pk)
    data = {"description": "hijacked", "enabled": "false", "bouncetracking": "on"}
    response = getattr(bob_client, method)(reverse(name, args=[alice_login.pk]), data)
    # 405 is fine for a GET on a POST-only URL: it reveals nothing about the id.
    assert response.status_code == (405 if (name, method) == ("login_set_enabled", "get") else 404)
    after = Login.objects.get(pk=alice_login.pk)
    assert (after.description, after.enabled, after.password_hash, after.featureset()) == (
        before.description, before.enabled, before.password_hash, before.featureset())
    assert list(AuditEntry.objects.values_list("action", flat=True)) == ["created"]


@pytest.mark.parametrize("name", LOGIN_URLS)
def test_a_login_id_that_does_not_exist_looks_the_same(bob_client, name):
    response = bob_client.post(reverse(name, args=[999999]), {"enabled": "false"})
    assert response.status_code == 404


def test_another_customers_reset_token_does_not_reset(alice, alice_client, bob_client):
    login, _ = services.create_login(alice)
    url = reverse("login_reset", args=[login.pk])
    html = alice_client.get(url).content.decode()
    token = re.search(r'name="once" value="([^"]+)"', html).group(1)
    # bob with alice's token: not found, nothing changes, and her token still works.
    assert bob_client.post(url, {"once": token}).status_code == 404
    assert Login.objects.get(pk=login.pk).password_hash == login.password_hash
    response = alice_client.post(url, {"once": token})
    assert response.status_code == 200 and b'id="new-password"' in response.content


def test_connect_with_another_customers_login_is_not_found(bob_client, alice_login):
    assert bob_client.get(reverse("connect"), {"login": alice_login.pk}).status_code == 404
    assert bob_client.get(reverse("connect"), {"login": "abc"}).status_code == 404


def test_staff_edits_only_their_own_logins_in_the_dashboard(staff_client, alice_login):
    # The audit area is read-only; staff change customers' logins through the admin (audited).
    assert staff_client.get(reverse("login_edit", args=[alice_login.pk])).status_code == 404


@pytest.mark.parametrize("url", ["/audit/", "/audit/log/", "/audit/logins.csv"])
def test_audit_area_is_not_found_for_customers(alice_client, alice_login, url):
    response = alice_client.get(url)
    assert response.status_code == 404
    assert alice_login.username.encode() not in response.content


@pytest.mark.parametrize("url", ["/audit/", "/audit/log/", "/audit/logins.csv"])
def test_audit_area_is_open_to_staff(staff_client, alice_login, bob_login, url):
    response = staff_client.get(url)
    assert response.status_code == 200
    assert alice_login.username.encode() in response.content
    assert bob_login.username.encode() in response.content


def test_admin_is_closed_to_customers(alice_client, alice_login):
    response = alice_client.get("/admin/credentials/login/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_not_found_page_uses_the_site_layout(bob_client, alice_login):
    response = bob_client.get(reverse("login_edit", args=[alice_login.pk]))
    html = response.content.decode()
    assert response.status_code == 404
    assert "<h1>Not found</h1>" in html and 'href="/connect/"' in html
    assert alice_login.username not in html
