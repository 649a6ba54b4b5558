"""The DNS check, table-tested against a real DNS server: right, missing, wrong and failed
lookups for the DKIM, SPF and DMARC records."""
import asyncio

import pytest

from relay.mx import make_resolver
from senders.dnscheck import ERROR, MISSING, RIGHT, WRONG, Wanted, check
from tests.relay.dnsserver import SERVFAIL, DNSServer

from .conftest import txt

KEY = "v=DKIM1; k=rsa; p=" + "A" * 392
OTHER_KEY = "v=DKIM1; k=rsa; p=" + "B" * 392
DKIM = Wanted("dkim", "s1._domainkey.shop.test", KEY, "s1")
SPF = Wanted("spf", "shop.test", "include:_spf.relay.test")
DMARC = Wanted("dmarc", "_dmarc.shop.test", "v=DMARC1; p=none")

CASES = [
    # (what is wanted, records at its name, status)
    (DKIM, {"TXT": [txt(KEY)]}, RIGHT),
    (DKIM, {"TXT": [txt(KEY.replace("; ", ";\t"))]}, RIGHT),  # spacing is not content
    (DKIM, None, MISSING),  # NXDOMAIN
    (DKIM, {"TXT": [["v=spf1 -all"]]}, MISSING),  # a TXT record, but no key
    (DKIM, {"TXT": [txt(OTHER_KEY)]}, WRONG),
    (DKIM, {"TXT": [txt(KEY.replace("k=rsa", "k=ed25519"))]}, WRONG),
    (DKIM, SERVFAIL, ERROR),
    (SPF, {"TXT": [["v=spf1 include:_spf.relay.test -all"]]}, RIGHT),
    (SPF, {"TXT": [["v=spf1 mx +include:_spf.relay.test ~all"], ["google-site=x"]]}, RIGHT),
    (SPF, {"TXT": [["google-site-verification=abc"]]}, MISSING),
    (SPF, {}, MISSING),  # the name exists without TXT records
    (SPF, {"TXT": [["v=spf1 mx -all"]]}, WRONG),
    (SPF, {"TXT": [["v=spf1 include:_spf.relay.test -all"], ["v=spf1 mx -all"]]}, WRONG),
    (DMARC, {"TXT": [["v=DMARC1; p=quarantine; rua=mailto:d@shop.test"]]}, RIGHT),
    (DMARC, None, MISSING),
    (DMARC, {"TXT": [["v=DMARC1; rua=mailto:d@shop.test"]]}, WRONG),  # no p=
]


@pytest.fixture(scope="module")
def server():
    with DNSServer({}) as s:
        yield s


@pytest.mark.parametrize(("want", "records", "status"), CASES)
def test_check(server, want, records, status):
    server.resolver.zone.pop(want.name, None)
    if records is not None:
        server.set(want.name, records)
    [found] = asyncio.run(check(make_resolver([server.nameserver], timeout=2), [want]))
    assert (found.kind, found.name, found.status) == (want.kind, want.name, status)
    if status == WRONG:
        assert found.note  # the page says what is wrong


def test_one_query_per_name(server):
    server.set("shop.test", {"TXT": [["v=spf1 include:_spf.relay.test -all"]]})
    before = len(server.queries)
    found = asyncio.run(check(make_resolver([server.nameserver], timeout=2), [SPF, SPF]))
    assert [f.status for f in found] == [RIGHT, RIGHT]
    assert server.queries[before:] == [("shop.test", "TXT")]
