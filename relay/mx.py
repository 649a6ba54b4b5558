"""Routing of outbound mail: RELAY_ROUTES, MX lookup (RFC 5321 5.1), implicit MX, null MX.

``resolve()`` turns a recipient domain into the hosts to try, in order, or into an error that
says whether to retry. It never raises for a DNS answer. The decisions:

- A route in RELAY_ROUTES (the domain itself, else ``*``) replaces DNS. Its host is an IP
  address or a name resolved with A/AAAA; private addresses are allowed there (the operator
  wrote them). A route host that does not resolve is a temporary error: the fix is in our
  configuration, not in the recipient's domain.
- MX records in preference order, equal preferences shuffled; each host's A then AAAA
  records (IPv4 first: many hosts have no IPv6 route). An address seen under an earlier
  host is not tried twice.
- No MX records (NOERROR, no answer): the domain's own A/AAAA (implicit MX).
- Null MX (RFC 7505, a single ``0 .``): permanent, 556 5.1.10. NXDOMAIN: permanent 5.1.2.
  SERVFAIL, timeouts and other resolver failures: temporary 4.4.3.
- MX hosts none of which has an address: permanent 5.4.4 if every lookup said so (NXDOMAIN
  or no records), temporary 4.4.3 if any of them failed.
- Addresses found through public DNS that are not global unicast (loopback, private,
  link-local, unspecified, shared, reserved, multicast) are dropped unless allow_private.
  If that leaves nothing, the error is permanent 5.4.4: the domain points at addresses we
  will never deliver to, and retrying for a day would only delay the sender's bounce.
"""
from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.resolver

OPPORTUNISTIC = "opportunistic"  # STARTTLS when offered, certificate not checked (RFC 7435)
REQUIRED = "required"  # STARTTLS or fail
IMPLICIT = "implicit"  # TLS from the first byte (smtps)
_SCHEMES = {"smtp": (OPPORTUNISTIC, 25), "smtp+starttls": (REQUIRED, 587),
            "smtps": (IMPLICIT, 465)}
_ROUTE_DOMAIN = re.compile(r"(?:\*|[a-z0-9_](?:[a-z0-9_-]*[a-z0-9])?(?:\.[a-z0-9_](?:[a-z0-9_-]*"
                           r"[a-z0-9])?)*)\Z")
_USERINFO = re.compile(r"://[^/]*@")
_HOST = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?\Z")


@dataclass(frozen=True)
class Route:
    """Where RELAY_ROUTES sends a domain's mail; repr and str never show the credentials."""

    host: str
    port: int = 25
    tls: str = OPPORTUNISTIC
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)

    @property
    def has_auth(self) -> bool:
        return bool(self.username)

    def __str__(self) -> str:
        scheme = {v[0]: k for k, v in _SCHEMES.items()}[self.tls]
        auth = "***@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{auth}{host}:{self.port}"


@dataclass(frozen=True)
class Destination:
    """One host to try: its name (for EHLO logs, TLS SNI), its addresses in order, the port."""

    host: str
    addresses: tuple[str, ...]
    port: int = 25
    tls: str = OPPORTUNISTIC
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    preference: int | None = None  # the MX preference; None for a route or an implicit MX


@dataclass(frozen=True)
class RoutingError:
    """Why a domain has nowhere to go: an SMTP-like code and RFC 3463 status, for the attempt
    record and the DSN. ``permanent``: fail now; otherwise defer and retry."""

    permanent: bool
    code: int
    status: str
    text: str


@dataclass(frozen=True)
class Resolution:
    """The hosts to try in order, or the error (exactly one of the two is set)."""

    destinations: tuple[Destination, ...] = ()
    error: RoutingError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _fail(permanent: bool, status: str, text: str) -> Resolution:
    code = (556 if status == "5.1.10" else 550) if permanent else 451
    return Resolution(error=RoutingError(permanent, code, status, text))


# -- RELAY_ROUTES ----------------------------------------------------------------------------

def _parse_port(text: str, item: str) -> int:
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 65535):
        raise ValueError(f"{item!r}: the port must be a number from 1 to 65535")
    return int(text)


def _parse_host(host: str, item: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOST.match(host) or len(host) > 253:
        raise ValueError(f"{item!r}: {host!r} is not a host name or IP address")
    return host.lower()


def _parse_target(target: str, item: str) -> Route:
    if "://" in target:
        scheme = target.partition("://")[0].lower()
        if scheme not in _SCHEMES:
            raise ValueError(f"{item!r}: unknown scheme {scheme!r} (use smtp, smtp+starttls or "
                             "smtps)")
        try:
            parts = urlsplit(target)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"{item!r}: {exc}") from None
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"{item!r}: a route takes no path, ?query or #fragment")
        if not parts.hostname:
            raise ValueError(f"{item!r}: the host is missing")
        tls, default_port = _SCHEMES[scheme]
        username = unquote(parts.username or "")
        password = unquote(parts.password or "")
        if (username or password) and tls == OPPORTUNISTIC:
            raise ValueError(f"{item!r}: credentials go over TLS only: use smtp+starttls:// "
                             "or smtps://")
        if password and not username:
            raise ValueError(f"{item!r}: a password without a user name")
        return Route(_parse_host(parts.hostname, item), port or default_port, tls,
                     username, password)
    if target.startswith("["):  # [IPv6]:port
        host, sep, rest = target[1:].partition("]")
        port = _parse_port(rest[1:], item) if rest.startswith(":") else 25
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{item!r}: write an IPv6 address as [address]:port")
        return Route(_parse_host(host, item), port)
    host, sep, port_text = target.rpartition(":")
    if not sep:
        host, port_text = target, "25"
    return Route(_parse_host(host, item), _parse_port(port_text, item))


def parse_routes(text: str) -> dict[str, Route]:
    """RELAY_ROUTES to {domain or "*": Route}; raise ValueError saying which item is wrong.

    Items are comma-separated ``domain=target``; a target is ``host[:port]`` (port 25,
    opportunistic STARTTLS) or a URL ``smtp://``, ``smtp+starttls://`` (STARTTLS required,
    port 587) or ``smtps://`` (TLS from the first byte, port 465) with optional
    ``user:password@`` (percent-encoded; a comma in a password is ``%2C``).
    """
    routes: dict[str, Route] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        shown = _USERINFO.sub("://***@", item)  # errors end up in logs: no credentials
        domain, eq, target = (s.strip() for s in item.partition("="))
        if not eq or not target:
            raise ValueError(f"{shown!r}: expected domain=host:port")
        domain = domain.lower().rstrip(".")
        if not _ROUTE_DOMAIN.match(domain):
            raise ValueError(f"{shown!r}: {domain!r} is not a domain name or *")
        if domain in routes:
            raise ValueError(f"{shown!r}: a second route for {domain}")
        routes[domain] = _parse_target(target, shown)
    return routes


def route_for(domain: str, routes: Mapping[str, Route]) -> Route | None:
    domain = domain.lower().rstrip(".")
    return routes.get(domain) or routes.get("*")


# -- the resolver ----------------------------------------------------------------------------

def parse_nameservers(text: str | Sequence[str]) -> list[tuple[str, int]]:
    """``127.0.0.1:5353,[::1]:53,192.0.2.1`` to [(ip, port)]; raise ValueError if malformed."""
    items = text.split(",") if isinstance(text, str) else list(text)
    servers = []
    for item in (part.strip() for part in items):
        if not item:
            continue
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else "53"
        elif item.count(":") == 1:
            host, _, port_text = item.partition(":")
        else:
            host, port_text = item, "53"
        try:
            address = str(ipaddress.ip_address(host))
        except ValueError:
            raise ValueError(f"{item!r}: a name server is an IP address[:port]") from None
        servers.append((address, _parse_port(port_text, item)))
    return servers


def make_resolver(nameservers: str | Sequence[str] | Sequence[tuple[str, int]] = (),
                  timeout: float = 5.0, lifetime: float = 20.0) -> dns.asyncresolver.Resolver:
    """An async resolver: the given name servers (text as in DNS_NAMESERVERS, or the (ip, port)
    pairs settings.DNS_NAMESERVERS holds), else /etc/resolv.conf.

    ``timeout`` is per server and try, ``lifetime`` the whole query's budget.
    """
    servers = [s for s in nameservers if isinstance(s, tuple)] or parse_nameservers(
        [s for s in nameservers if isinstance(s, str)] if not isinstance(nameservers, str)
        else nameservers)
    resolver = dns.asyncresolver.Resolver(configure=not servers)
    if servers:
        resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port) for ip, port in servers]
    resolver.timeout = timeout
    resolver.lifetime = lifetime
    resolver.cache = dns.resolver.LRUCache(10000)
    return resolver


def resolver_from_settings() -> dns.asyncresolver.Resolver:
    from django.conf import settings

    return make_resolver(settings.DNS_NAMESERVERS)


# -- resolve ---------------------------------------------------------------------------------

def is_public(address: str) -> bool:
    """True for a global unicast address: the only kind public DNS may send us to."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class _Lookup:
    """The outcome of one name's A and AAAA queries."""

    def __init__(self) -> None:
        self.addresses: list[str] = []
        self.temporary = ""  # why it failed for now, if it did
        self.nxdomain = False


async def _query(resolver, name: str, rdtype: str):
    """The answer's records, [] for NOERROR without records; DNS errors are raised."""
    try:
        return list(await resolver.resolve(name, rdtype, search=False))
    except dns.resolver.NoAnswer:
        return []


async def _addresses(resolver, name: str) -> _Lookup:
    lookup = _Lookup()
    for rdtype in ("A", "AAAA"):
        try:
            lookup.addresses += [r.address for r in await _query(resolver, name, rdtype)]
        except dns.resolver.NXDOMAIN:
            lookup.nxdomain = True
            break  # the name does not exist: no point asking for AAAA
        except dns.exception.DNSException as exc:
            lookup.temporary = f"{rdtype} lookup for {name} failed: {_why(exc)}"
    return lookup


def _why(exc: dns.exception.DNSException) -> str:
    if isinstance(exc, dns.resolver.LifetimeTimeout | dns.exception.Timeout):
        return "timed out"
    if isinstance(exc, dns.resolver.NoNameservers):
        return "no name server answered (SERVFAIL)"
    return type(exc).__name__


def _literal(domain: str) -> str | None:
    """The IP of an address literal ``[192.0.2.1]`` / ``[IPv6:2001:db8::1]``, else None."""
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    inner = domain[1:-1]
    if inner[:5].lower() == "ipv6:":
        inner = inner[5:]
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        return ""


async def _resolve_route(route: Route, resolver) -> Resolution:
    try:
        addresses: tuple[str, ...] = (str(ipaddress.ip_address(route.host)),)
    except ValueError:
        lookup = await _addresses(resolver, route.host)
        if not lookup.addresses:
            why = lookup.temporary or f"{route.host} has no A or AAAA record"
            return _fail(False, "4.4.3", f"route host {route.host}: {why}")
        addresses = tuple(dict.fromkeys(lookup.addresses))
    return Resolution((Destination(route.host, addresses, route.port, route.tls,
                                   route.username, route.password),))


def _order_mx(records, rng: random.Random) -> list[tuple[int, str]]:
    """(preference, host) in preference order, equal preferences in random order."""
    hosts = [(r.preference, r.exchange.to_text(omit_final_dot=True).lower()) for r in records]
    rng.shuffle(hosts)
    return sorted(hosts, key=lambda h: h[0])  # sorted() is stable: the shuffle stays in ties


async def resolve(domain: str, routes: Mapping[str, Route],
                  resolver: dns.asyncresolver.Resolver, allow_private: bool = False,
                  rng: random.Random | None = None) -> Resolution:
    """Where mail for ``domain`` goes: the hosts to try in order, or a RoutingError."""
    route = route_for(domain, routes)
    if route is not None:
        return await _resolve_route(route, resolver)
    literal = _literal(domain)
    if literal is not None:
        if not literal:
            return _fail(True, "5.1.2", f"{domain} is not a valid address literal")
        if not allow_private and not is_public(literal):
            return _fail(True, "5.4.4", f"{domain} is not a public address")
        return Resolution((Destination(literal, (literal,)),))
    try:
        name = dns.name.from_text(domain.rstrip("."), origin=dns.name.root).to_text()
    except (dns.exception.DNSException, UnicodeError, ValueError):
        return _fail(True, "5.1.2", f"{domain!r} is not a valid domain name")
    rng = rng or random.Random()
    try:
        mx_records = await _query(resolver, name, "MX")
    except dns.resolver.NXDOMAIN:
        return _fail(True, "5.1.2", f"domain {domain} does not exist (NXDOMAIN)")
    except dns.exception.DNSException as exc:
        return _fail(False, "4.4.3", f"MX lookup for {domain} failed: {_why(exc)}")
    hosts = _order_mx(mx_records, rng)
    real = [h for h in hosts if h[1] not in ("", ".")]
    if hosts and not real:
        return _fail(True, "5.1.10", f"domain {domain} accepts no mail (null MX, RFC 7505)")
    if not real:
        real = [(None, domain.lower().rstrip("."))]  # implicit MX: the domain itself

    destinations: list[Destination] = []
    seen: set[str] = set()
    temporary, dropped = "", []
    for preference, host in real:
        lookup = await _addresses(resolver, host)
        temporary = temporary or lookup.temporary
        addresses = []
        for address in lookup.addresses:
            if address in seen:
                continue
            seen.add(address)
            if allow_private or is_public(address):
                addresses.append(address)
            else:
                dropped.append(f"{host}={address}")
        if addresses:
            destinations.append(Destination(host, tuple(addresses), preference=preference))
    if destinations:
        return Resolution(tuple(destinations))
    if temporary:
        return _fail(False, "4.4.3", temporary)
    if dropped:
        return _fail(True, "5.4.4", f"{domain} resolves only to non-public addresses "
                     f"({', '.join(dropped[:5])}); DELIVERY_ALLOW_PRIVATE allows them")
    if real[0][0] is None:
        return _fail(True, "5.1.2", f"domain {domain} has no MX, A or AAAA record")
    return _fail(True, "5.4.4", f"no MX host of {domain} has an address "
                 f"({', '.join(h for _, h in real[:5])})")
