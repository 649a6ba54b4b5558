"""relay.mx against a real DNS server on 127.0.0.1 (tests/relay/dnsserver.py): MX order, implicit
MX, null MX, NXDOMAIN, SERVFAIL, timeouts, private addresses, RELAY_ROUTES."""
import asyncio
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay import mx
from relay.mx import Route, parse_nameservers, parse_routes, resolve

from .dnsserver import DROP, SERVFAIL, DNSServer

ZONE = {
    "multi.test": {"MX": [(20, "b.multi.test"), (10, "dead.multi.test"), (20, "c.multi.test"),
                          (30, "v6.multi.test")]},
    "dead.multi.test": {"A": ["127.0.0.2"]},
    "b.multi.test": {"A": ["127.0.0.3"]},
    "c.multi.test": {"A": ["127.0.0.4", "127.0.0.3"]},
    "v6.multi.test": {"A": ["127.0.0.5"], "AAAA": ["::1"]},
    "tie.test": {"MX": [(5, "b.multi.test"), (5, "dead.multi.test"), (1, "v6.multi.test")]},
    "implicit.test": {"A": ["127.0.0.6"], "AAAA": ["::1"], "TXT": ["v=spf1 -all"]},
    "nothing.test": {"TXT": ["no mail here"]},
    "nullmx.test": {"MX": [(0, ".")]},
    "broken.test": SERVFAIL,
    "silent.test": DROP,
    "halfbroken.test": {"MX": [(10, "broken.test"), (20, "b.multi.test")]},
    "allbroken.test": {"MX": [(10, "broken.test"), (20, "gone.test")]},
    "ghosts.test": {"MX": [(10, "gone.test"), (20, "gone2.test")]},
    "public.test": {"MX": [(10, "mx.public.test"), (20, "lan.public.test")]},
    "mx.public.test": {"A": ["192.168.1.10"], "AAAA": ["fe80::1", "2001:4860:4860::8888"]},
    "lan.public.test": {"A": ["10.0.0.1", "8.8.8.8", "127.0.0.1"]},
    "private.test": {"MX": [(10, "lan.private.test")]},
    "lan.private.test": {"A": ["10.1.2.3", "169.254.0.1", "0.0.0.0"], "AAAA": ["::ffff:127.0.0.1"]},
    "relay.internal": {"A": ["10.9.9.9"]},
    "alias.test": {"MX": [(10, "cname.alias.test")]},
    "cname.alias.test": {"CNAME": ["b.multi.test"]},
}


@pytest.fixture(scope="module")
def dns_server():
    with DNSServer(ZONE) as server:
        yield server


@pytest.fixture
def resolver(dns_server):
    r = mx.make_resolver([dns_server.nameserver], timeout=0.5, lifetime=1.5)
    r.cache = None  # every test sees the zone as it is now
    return r


def run(domain, resolver, routes=None, allow_private=True, rng=None):
    return asyncio.run(resolve(domain, routes or {}, resolver, allow_private, rng))


def hosts(resolution):
    return [(d.host, d.addresses) for d in resolution.destinations]


def test_mx_hosts_in_preference_order_with_addresses_a_then_aaaa(resolver):
    result = run("multi.test", resolver, rng=random.Random(1))
    assert result.ok and result.error is None
    order = hosts(result)
    assert order[0] == ("dead.multi.test", ("127.0.0.2",))
    assert {order[1][0], order[2][0]} == {"b.multi.test", "c.multi.test"}
    assert order[3] == ("v6.multi.test", ("127.0.0.5", "::1"))
    assert [d.preference for d in result.destinations] == [10, 20, 20, 30]
    assert all(d.port == 25 and d.tls == mx.OPPORTUNISTIC for d in result.destinations)


def test_an_address_is_listed_once_under_its_first_host(resolver):
    result = run("multi.test", resolver, rng=random.Random(1))
    listed = [a for d in result.destinations for a in d.addresses]
    assert len(listed) == len(set(listed))
    if result.destinations[1].host == "c.multi.test":  # then b.multi.test has nothing new
        assert "b.multi.test" not in [d.host for d in result.destinations]
    assert "127.0.0.3" in listed and "127.0.0.4" in listed


def test_equal_preferences_come_in_both_orders(resolver):
    seen = set()
    for seed in range(30):
        order = hosts(run("tie.test", resolver, rng=random.Random(seed)))
        assert order[0][0] == "v6.multi.test"
        seen.add((order[1][0], order[2][0]))
    assert seen == {("b.multi.test", "dead.multi.test"), ("dead.multi.test", "b.multi.test")}


def test_implicit_mx_uses_the_domains_own_addresses(resolver):
    result = run("implicit.test", resolver)
    assert hosts(result) == [("implicit.test", ("127.0.0.6", "::1"))]
    assert result.destinations[0].preference is None


def test_mx_host_behind_a_cname(resolver):
    assert hosts(run("alias.test", resolver)) == [("cname.alias.test", ("127.0.0.3",))]


@pytest.mark.parametrize("domain, permanent, code, status", [
    ("nullmx.test", True, 556, "5.1.10"),
    ("no-such-domain.test", True, 550, "5.1.2"),
    ("nothing.test", True, 550, "5.1.2"),  # exists, but no MX, A or AAAA
    ("broken.test", False, 451, "4.4.3"),
    ("silent.test", False, 451, "4.4.3"),
    ("allbroken.test", False, 451, "4.4.3"),  # one host SERVFAIL, one NXDOMAIN: retry
    ("ghosts.test", True, 550, "5.4.4"),  # every MX host is NXDOMAIN
    ("bad..name", True, 550, "5.1.2"),
    ("[300.1.1.1]", True, 550, "5.1.2"),
])
def test_errors(resolver, domain, permanent, code, status):
    result = run(domain, resolver)
    assert not result.ok and result.destinations == ()
    error = result.error
    assert (error.permanent, error.code, error.status) == (permanent, code, status), error
    assert error.text


def test_nxdomain_text_names_the_domain(resolver):
    assert "no-such-domain.test" in run("no-such-domain.test", resolver).error.text


def test_timeout_says_so(resolver):
    assert "timed out" in run("silent.test", resolver).error.text


def test_a_failing_mx_host_is_skipped_when_another_works(resolver):
    result = run("halfbroken.test", resolver)
    assert hosts(result) == [("b.multi.test", ("127.0.0.3",))]


def test_non_public_addresses_are_dropped_by_default(resolver):
    result = run("public.test", resolver, allow_private=False)
    assert hosts(result) == [("mx.public.test", ("2001:4860:4860::8888",)),
                             ("lan.public.test", ("8.8.8.8",))]


def test_only_non_public_addresses_is_permanent(resolver):
    result = run("private.test", resolver, allow_private=False)
    assert (result.error.permanent, result.error.status) == (True, "5.4.4")
    assert "10.1.2.3" in result.error.text and "DELIVERY_ALLOW_PRIVATE" in result.error.text
    allowed = run("private.test", resolver, allow_private=True)
    assert hosts(allowed) == [("lan.private.test",
                               ("10.1.2.3", "169.254.0.1", "0.0.0.0", "::ffff:127.0.0.1"))]


@pytest.mark.parametrize("address, public", [
    ("8.8.8.8", True), ("2001:4860:4860::8888", True), ("127.0.0.1", False), ("::1", False),
    ("10.0.0.1", False), ("172.16.0.1", False), ("192.168.0.1", False), ("169.254.1.1", False),
    ("fe80::1", False), ("fc00::1", False), ("0.0.0.0", False), ("::", False),
    ("100.64.0.1", False), ("224.0.0.1", False), ("::ffff:10.0.0.1", False),
    ("::ffff:8.8.8.8", True),
])
def test_is_public(address, public):
    assert mx.is_public(address) is public


def test_address_literal(resolver):
    assert hosts(run("[8.8.8.8]", resolver, allow_private=False)) == [("8.8.8.8", ("8.8.8.8",))]
    assert hosts(run("[IPv6:2001:db8::1]", resolver)) == [("2001:db8::1", ("2001:db8::1",))]
    assert run("[127.0.0.1]", resolver, allow_private=False).error.status == "5.4.4"


# -- RELAY_ROUTES ---------------------------------------------------------------------------

def test_a_route_replaces_dns_and_may_be_private(resolver, dns_server):
    routes = parse_routes("nullmx.test=relay.internal:2525, *=smtps://u%40x:p%2Cw@127.0.0.9")
    result = run("NullMX.Test.", resolver, routes, allow_private=False)
    assert hosts(result) == [("relay.internal", ("10.9.9.9",))]
    assert result.destinations[0].port == 2525
    other = run("anything.example", resolver, routes, allow_private=False).destinations[0]
    assert (other.host, other.addresses, other.port, other.tls) == (
        "127.0.0.9", ("127.0.0.9",), 465, mx.IMPLICIT)
    assert (other.username, other.password) == ("u@x", "p,w")
    assert "p,w" not in repr(other) and "u@x" not in repr(other)


def test_a_route_host_that_does_not_resolve_is_temporary(resolver):
    result = run("x.test", resolver, parse_routes("*=gone.test:25"))
    assert (result.error.permanent, result.error.status) == (False, "4.4.3")
    assert "gone.test" in result.error.text


def test_parse_routes_forms():
    routes = parse_routes(
        " example.com=mx.internal:25 ,*=smtp+starttls://user:pass%3Aword@smtp.provider.net:587,"
        "b.example=[::1]:2525,c.example=smtp://10.0.0.1,d.example=smtps://h.example")
    assert routes["example.com"] == Route("mx.internal", 25, mx.OPPORTUNISTIC)
    star = routes["*"]
    assert (star.host, star.port, star.tls, star.username, star.password) == (
        "smtp.provider.net", 587, mx.REQUIRED, "user", "pass:word")
    assert routes["b.example"] == Route("::1", 2525)
    assert routes["c.example"] == Route("10.0.0.1", 25)
    assert routes["d.example"] == Route("h.example", 465, mx.IMPLICIT)
    assert parse_routes("") == {} and parse_routes(" , ") == {}
    assert mx.route_for("EXAMPLE.com.", routes) is routes["example.com"]
    assert mx.route_for("other.org", routes) is star


def test_credentials_never_in_repr_or_str():
    routes = parse_routes("*=smtp+starttls://someone:s3cret@smtp.provider.net")
    text = repr(routes) + str(routes["*"]) + repr(routes["*"])
    assert "s3cret" not in text and "someone" not in text
    assert str(routes["*"]) == "smtp+starttls://***@smtp.provider.net:587"


@pytest.mark.parametrize("text, says", [
    ("example.com", "domain=host"),
    ("example.com=", "domain=host"),
    ("=mx:25", "not a domain"),
    ("exa mple.com=mx:25", "not a domain"),
    ("a.com=mx:25,A.com=mx2:25", "second route"),
    ("a.com=mx:0", "port"),
    ("a.com=mx:65536", "port"),
    ("a.com=mx:x", "port"),
    ("a.com=http://mx", "unknown scheme"),
    ("a.com=smtp://u:p@mx", "TLS only"),
    ("a.com=smtps://mx/path", "no path"),
    ("a.com=smtps://:p@mx", "password without"),
    ("a.com=smtps://", "host is missing"),
    ("a.com=bad_host!:25", "not a host"),
    ("a.com=[::1:25", "IPv6"),
])
def test_parse_routes_errors(text, says):
    with pytest.raises(ValueError, match=says) as info:
        parse_routes(text)
    assert repr(text.split(",")[-1].strip())[:10] in str(info.value) or "second" in says


def test_parse_routes_error_never_shows_the_credentials():
    for text in ("a.com=smtps://user:hunter2@mx/path", "a.com=smtps://user:hunter2@mx:99999",
                 "a.com=smtp://user:hunter2@mx", "a.com=smtps://us@er:hunter2@mx:x"):
        with pytest.raises(ValueError) as info:
            parse_routes(text)
        assert "hunter2" not in str(info.value) and "user" not in str(info.value)
        assert "***@" in str(info.value)


def test_resolver_from_settings(dns_server, settings):
    settings.DNS_NAMESERVERS = parse_nameservers(dns_server.nameserver)
    resolver = mx.resolver_from_settings()
    [server] = resolver.nameservers
    assert (server.address, server.port) == ("127.0.0.1", dns_server.port)
    result = asyncio.run(resolve("implicit.test", {}, resolver, allow_private=True))
    assert hosts(result) == [("implicit.test", ("127.0.0.6", "::1"))]


def test_parse_nameservers():
    assert parse_nameservers("127.0.0.1:5353, [::1]:53,192.0.2.1,::1") == [
        ("127.0.0.1", 5353), ("::1", 53), ("192.0.2.1", 53), ("::1", 53)]
    assert parse_nameservers("") == []
    for bad in ("dns.example", "127.0.0.1:0", "1.2.3.4:x"):
        with pytest.raises(ValueError):
            parse_nameservers(bad)


@given(st.text(max_size=80))
def test_parse_routes_raises_only_value_error(text):
    try:
        routes = parse_routes(text)
    except ValueError:
        return
    for route in routes.values():
        assert 1 <= route.port <= 65535 and route.tls in (mx.OPPORTUNISTIC, mx.REQUIRED,
                                                            mx.IMPLICIT)
