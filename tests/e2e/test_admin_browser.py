"""The Django admin in a real Chromium: staff change a login's features and save."""
import os

import pytest

from credentials import services
from credentials.models import AuditEntry, Login

# Playwright's sync API runs an event loop in this thread; the ORM calls here are synchronous.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def admin_sign_in(page, base_url: str) -> None:
    # pytest-django's admin_user: username "admin", password "password".
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/admin/")


def test_staff_change_a_feature_in_the_admin_and_save(browser, live_server, plain_http,
                                                      admin_user, alice):
    login, _ = services.create_login(alice, features=["clicktracking"], description="shop")
    context = browser.new_context()
    page = context.new_page()
    admin_sign_in(page, live_server.url)
    page.goto(f"{live_server.url}/admin/credentials/login/{login.pk}/change/")

    # Every help text reads as text, and the form goes on after them to its buttons.
    help_inline = page.locator("#id_inlinecss_helptext")
    assert "Copies <style> rules" in help_inline.inner_text()
    assert page.locator("input[name=_save]").is_visible()
    assert page.locator("a.deletelink").is_visible()

    page.check("#id_inlinecss")
    page.uncheck("#id_clicktracking")
    page.click("input[name=_save]")
    page.wait_for_url(f"{live_server.url}/admin/credentials/login/")
    assert "was changed successfully" in page.locator(".messagelist").inner_text()

    login.refresh_from_db()
    assert login.enabled_features() == ["inlinecss"]
    change = AuditEntry.objects.get(action="features_changed")
    assert (change.actor, change.login) == (admin_user, login)
    assert change.features_before["clicktracking"] and change.features_after["inlinecss"]
    assert Login.objects.get(pk=login.pk).description == "shop"
    context.close()
