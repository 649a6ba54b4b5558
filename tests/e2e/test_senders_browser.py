"""A real Chromium adds a sender domain: its page shows the records to publish; once the DKIM
record is in the (test) DNS, Check DNS marks it right, the others missing, and the domain
verified."""
import os

import pytest

from senders import keys
from senders.models import SenderDomain
from tests.relay.dnsserver import DNSServer
from tests.senders.conftest import txt

from .test_dashboard_browser import sign_in

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_customer_adds_a_domain_publishes_its_key_and_checks_dns(
        browser, live_server, plain_http, alice, settings):
    with DNSServer({}) as dns:
        settings.DNS_NAMESERVERS = dns.nameserver
        settings.SENDER_DNS_TIMEOUT = 2
        base = live_server.url
        page = browser.new_context().new_page()
        sign_in(page, base, "alice", "alice-pw-1234!")
        page.click("nav >> text=Sender domains")
        page.fill("#id_domain", "Shop.Example")
        page.click("button:has-text('Add domain')")
        domain = SenderDomain.objects.get(owner=alice)
        page.wait_for_url(f"{base}/domains/{domain.pk}/")
        key = domain.keys.get()
        record = keys.txt_value(key.algorithm, key.public_key)
        dkim_row = page.locator('tr[data-kind="dkim"]')
        assert f"{key.selector}._domainkey.shop.example" in dkim_row.inner_text()
        assert dkim_row.locator("code.record-value").inner_text() == record
        assert dkim_row.get_attribute("data-status") == "unchecked"
        assert "not verified" in page.locator("#domain-state").inner_text()

        dns.set(f"{key.selector}._domainkey.shop.example", {"TXT": [txt(record)]})
        page.click("button:has-text('Check DNS')")
        page.wait_for_selector('tr[data-kind="dkim"][data-status="right"]')
        assert page.locator('tr[data-kind="spf"]').get_attribute("data-status") == "missing"
        assert page.locator('tr[data-kind="dmarc"]').get_attribute("data-status") == "missing"
        assert page.locator("#domain-state").inner_text().startswith("verified since")
        assert "is verified" in page.content()  # the message after the check
