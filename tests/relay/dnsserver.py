"""A DNS server for tests (dnslib), on 127.0.0.1 over UDP and TCP, serving a zone from a dict.

    zone = {
        "multi.test": {"MX": [(10, "dead.multi.test"), (20, "mx.multi.test")]},
        "mx.multi.test": {"A": ["127.0.0.1"], "AAAA": ["::1"]},
        "nullmx.test": {"MX": [(0, ".")]},
        "broken.test": SERVFAIL,     # every query for the name answers SERVFAIL
        "silent.test": DROP,         # every query goes unanswered (the resolver times out)
    }
    with DNSServer(zone) as dns_server:
        resolver = relay.mx.make_resolver([dns_server.nameserver], timeout=1)

A name in the zone without the asked type answers NOERROR with no records; a name not in the
zone answers NXDOMAIN. Names are case-insensitive, without the final dot. ``queries`` lists
(name, type) in the order they came.
"""
from __future__ import annotations

import ipaddress
import threading

from dnslib import AAAA, CNAME, MX, QTYPE, RCODE, RR, TXT, A, DNSError, DNSLabel
from dnslib.server import BaseResolver, DNSLogger
from dnslib.server import DNSServer as _LibServer

from .smtp_helpers import free_port

SERVFAIL = "SERVFAIL"
DROP = "DROP"

_RDATA = {"A": A, "AAAA": lambda text: AAAA(tuple(ipaddress.IPv6Address(text).packed)),
          "CNAME": CNAME, "TXT": TXT}


class _QuietLogger(DNSLogger):
    def __init__(self) -> None:
        super().__init__(log="-recv,-send,-request,-reply,-truncated,-error,-data")


class _ZoneResolver(BaseResolver):
    def __init__(self, zone: dict, queries: list[tuple[str, str]]) -> None:
        self.zone = {name.lower().rstrip("."): records for name, records in zone.items()}
        self.queries = queries

    def resolve(self, request, handler):
        name = str(request.q.qname).lower().rstrip(".")
        qtype = QTYPE[request.q.qtype]
        self.queries.append((name, qtype))
        reply = request.reply()
        records = self.zone.get(name)
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        if records == DROP:
            raise DNSError("dropped on purpose")  # dnslib's handler then sends nothing
        if records == SERVFAIL:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        qname = request.q.qname
        for _ in range(8):  # follow CNAMEs inside the zone, as a recursive resolver does
            if qtype in records or "CNAME" not in records or qtype == "CNAME":
                break
            target = records["CNAME"][0]
            reply.add_answer(RR(qname, QTYPE.CNAME, rdata=CNAME(target), ttl=60))
            qname, records = DNSLabel(target), self.zone.get(target.lower().rstrip("."), {})
            if not isinstance(records, dict):
                records = {}
        for value in records.get(qtype, []):
            if qtype == "MX":
                preference, exchange = value
                rdata = MX(DNSLabel(exchange if exchange != "." else ""), preference)
            else:
                rdata = _RDATA[qtype](value)
            reply.add_answer(RR(qname, getattr(QTYPE, qtype), rdata=rdata, ttl=60))
        return reply


class DNSServer:
    """The zone on 127.0.0.1:<free port>, UDP and TCP, in background threads."""

    def __init__(self, zone: dict) -> None:
        self.queries: list[tuple[str, str]] = []
        self.resolver = _ZoneResolver(zone, self.queries)
        self.port = 0
        self._servers: list[_LibServer] = []

    @property
    def nameserver(self) -> str:
        """The address for DNS_NAMESERVERS / make_resolver: ``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    def set(self, name: str, records) -> None:
        self.resolver.zone[name.lower().rstrip(".")] = records

    def start(self) -> DNSServer:
        for _ in range(20):
            port = free_port()
            servers: list[_LibServer] = []
            try:
                for tcp in (False, True):
                    servers.append(_LibServer(self.resolver, "127.0.0.1", port, tcp=tcp,
                                              logger=_QuietLogger()))
            except OSError:  # taken between free_port() and bind: another port
                for server in servers:
                    server.server.server_close()
                continue
            self.port, self._servers = port, servers
            for server in servers:
                threading.Thread(target=server.server.serve_forever, kwargs={
                    "poll_interval": 0.1}, daemon=True).start()
            return self
        raise RuntimeError("no free port for the test DNS server")

    def stop(self) -> None:
        for server in self._servers:
            server.server.shutdown()
            server.server.server_close()
        self._servers = []

    def __enter__(self) -> DNSServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
