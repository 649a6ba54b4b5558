"""relay.outbound's mx transport against real servers on 127.0.0.1: the scriptable sink and the
test DNS server. Outcomes per recipient, routing errors, the next MX host, connection reuse and
the per-destination limit, idle connections closed with QUIT."""
import asyncio
import time

import pytest

from relay import mx
from relay.delivery import Rcpt
from relay.mx import parse_routes
from relay.outbound import ConnectionPools, MxTransport, RouteCache
from relay.smtp_out import Timeouts

from .dnsserver import SERVFAIL, DNSServer
from .sink import Sink

MESSAGE = b"From: a@sender.test\r\nTo: b@rcpt.test\r\nSubject: hi\r\n\r\nHello.\r\n"
FAST = Timeouts(connect=2, greeting=2, mail=2, rcpt=2, data_init=2, data_block=2, data_done=2)


def transport(routes="", dns_server=None, port=25, limit=20, per_connection=100, idle=5.0):
    resolver = mx.make_resolver([dns_server.nameserver] if dns_server else ["127.0.0.1:9"],
                                timeout=0.5, lifetime=1.5)
    return MxTransport(RouteCache(parse_routes(routes), resolver, True, port),
                       ConnectionPools("out.smtpeter.test", FAST, limit, per_connection, idle))


def run(coro_fn):
    return asyncio.run(coro_fn())


def send_all(t, domain, addresses, data=MESSAGE):
    async def go():
        try:
            return await t.send(domain, "a@sender.test", [Rcpt(a) for a in addresses], data,
                                "", "")
        finally:
            await t.close()
    return run(go)


def test_each_recipient_gets_the_outcome_of_its_own_reply():
    with Sink(dsn=True) as sink:
        t = transport(f"*=127.0.0.1:{sink.port}")
        outcomes = send_all(t, "r.test", ["ok@r.test", "tempfail@r.test", "reject@r.test",
                                          "ok-2@r.test"])
    assert [(o.status, o.code, o.enhanced) for o in outcomes] == [
        ("delivered", 250, "2.0.0"), ("deferred", 451, "4.2.0"), ("failed", 550, "5.1.1"),
        ("delivered", 250, "2.0.0")]
    assert outcomes[2].text == "No such user here"
    for o in outcomes:
        assert (o.host, o.ip, o.port, o.dsn_passed) == ("127.0.0.1", "127.0.0.1", sink.port,
                                                         True)
        assert o.duration_ms >= 0 and o.tls_version == ""
    assert [tx.rcpt_tos for tx in sink.received] == [["ok@r.test", "ok-2@r.test"]]
    assert sink.connections == 1 and sink.lines[-1] == "QUIT"  # close() said goodbye


def test_a_dropped_connection_defers_whom_it_left_unanswered(tmp_path):
    with Sink(starttls=True, cert_dir=tmp_path) as sink:
        t = transport(f"*=127.0.0.1:{sink.port}")
        outcomes = send_all(t, "r.test", ["reject@r.test", "ok@r.test", "drop@r.test"])
    assert [(o.status, o.code) for o in outcomes] == [
        ("failed", 550), ("deferred", 451), ("deferred", 451)]
    assert "connection closed" in outcomes[2].text
    assert outcomes[1].tls_version.startswith("TLSv1.") and outcomes[1].tls_cipher
    assert sink.received == []


ZONE = {
    "multi.test": {"MX": [(10, "dead.multi.test"), (20, "mx.multi.test")]},
    "dead.multi.test": {"A": ["127.0.0.2"]},  # nothing listens there: refused
    "mx.multi.test": {"A": ["127.0.0.1"]},
    "implicit.test": {"A": ["127.0.0.1"]},
    "nullmx.test": {"MX": [(0, ".")]},
    "broken.test": SERVFAIL,
    "lan.test": {"MX": [(10, "mx.lan.test")]},
    "mx.lan.test": {"A": ["10.1.2.3"]},
}


@pytest.fixture(scope="module")
def dns_server():
    with DNSServer(ZONE) as server:
        yield server


def test_a_dead_first_mx_host_hands_over_to_the_second(dns_server):
    with Sink() as sink:
        t = transport(dns_server=dns_server, port=sink.port)
        [outcome] = send_all(t, "multi.test", ["ok@multi.test"])
        [implicit] = send_all(transport(dns_server=dns_server, port=sink.port),
                              "implicit.test", ["ok@implicit.test"])
    assert (outcome.status, outcome.host, outcome.ip) == ("delivered", "mx.multi.test",
                                                         "127.0.0.1")
    assert (implicit.status, implicit.host) == ("delivered", "implicit.test")
    assert len(sink.received) == 2


@pytest.mark.parametrize("domain, status, code, enhanced", [
    ("nullmx.test", "failed", 556, "5.1.10"),
    ("gone.test", "failed", 550, "5.1.2"),
    ("broken.test", "deferred", 451, "4.4.3"),
])
def test_routing_errors_settle_every_recipient_without_connecting(dns_server, domain, status,
                                                                  code, enhanced):
    with Sink() as sink:
        t = transport(dns_server=dns_server, port=sink.port)
        outcomes = send_all(t, domain, [f"a@{domain}", f"b@{domain}"])
    assert [(o.status, o.code, o.enhanced) for o in outcomes] == [(status, code, enhanced)] * 2
    assert outcomes[0].host == domain and outcomes[0].ip is None
    assert sink.connections == 0


def test_only_private_addresses_fail_without_allow_private(dns_server):
    resolver = mx.make_resolver([dns_server.nameserver], timeout=0.5, lifetime=1.5)
    t = MxTransport(RouteCache({}, resolver, False),
                    ConnectionPools("out.smtpeter.test", FAST, 20, 100, 5))
    [outcome] = send_all(t, "lan.test", ["a@lan.test"])
    assert (outcome.status, outcome.enhanced) == ("failed", "5.4.4")


def test_routes_are_cached_briefly_and_lookups_shared(dns_server):
    t = transport(dns_server=dns_server, port=9)

    async def go():
        before = len(dns_server.queries)
        await asyncio.gather(*(t.routes.get("multi.test") for _ in range(5)))
        await t.routes.get("multi.test")
        return [q for q in dns_server.queries[before:] if q[0] == "multi.test"]
    assert run(go) == [("multi.test", "MX")]


def test_whole_transaction_4xx_tries_the_next_host_a_recipient_s_own_4xx_does_not(
        dns_server):
    dns_server.set("grey.test", {"MX": [(10, "one.grey.test"), (20, "two.grey.test")]})
    dns_server.set("one.grey.test", {"A": ["127.0.0.1"]})
    dns_server.set("two.grey.test", {"A": ["127.0.0.3"]})
    with Sink() as first:
        # The second MX on another loopback address, on the same port (SMTP_OUT_PORT).
        second = Sink(host="127.0.0.3").start_on(first.port)
        try:
            first.script["grey@sender.test"] = "tempfail"  # 451 to MAIL, on the first only
            first.script["d@grey.test"] = "data451"  # 451 after the data, on the first only
            t = transport(dns_server=dns_server, port=first.port)

            async def go():
                greylisted = await t.send("grey.test", "grey@sender.test",
                                          [Rcpt("ok@grey.test"), Rcpt("reject@grey.test")],
                                          MESSAGE, "", "")
                busy = await t.send("grey.test", "a@sender.test",
                                    [Rcpt("tempfail@grey.test"), Rcpt("d@grey.test")],
                                    MESSAGE, "", "")
                await t.close()
                return greylisted, busy
            greylisted, busy = run(go)
        finally:
            second.stop()
    assert [(o.status, o.code, o.host) for o in greylisted] == [
        ("delivered", 250, "two.grey.test"), ("failed", 550, "two.grey.test")]
    assert [(o.status, o.code, o.host) for o in busy] == [
        ("deferred", 451, "one.grey.test"), ("delivered", 250, "two.grey.test")]
    assert busy[0].enhanced == "4.2.0" and busy[1].ip == "127.0.0.3"
    # The recipient's own 451 stayed with the first host; the DATA 451 moved on.
    assert [tx.rcpt_tos for tx in first.received] == [["d@grey.test"]]
    assert [tx.rcpt_tos for tx in second.received] == [["ok@grey.test"], ["d@grey.test"]]
    assert not any("tempfail@grey.test" in line for line in second.lines)


def test_connections_are_reused_and_limited_per_destination():
    with Sink() as sink:
        t = transport(f"*=127.0.0.1:{sink.port}", limit=3, per_connection=5)

        async def go():
            try:
                results = await asyncio.gather(*(
                    t.send("r.test", "a@sender.test", [Rcpt(f"slow0.2-{i}@r.test")], MESSAGE,
                           "", "") for i in range(20)))
                return results, max_seen
            finally:
                await t.close()

        max_seen = 0

        async def watch():
            nonlocal max_seen
            while True:
                max_seen = max(max_seen, sum(p.count for p in t.pools._pools.values()))
                await asyncio.sleep(0.01)

        async def both():
            watcher = asyncio.create_task(watch())
            try:
                return await go()
            finally:
                watcher.cancel()
        results, seen = run(both)
    assert all(o.status == "delivered" for [o] in results)
    assert len(sink.received) == 20
    # 20 transactions, 5 at most per connection, 3 connections at most at once.
    assert 4 <= sink.connections < 20 and seen <= 3
    assert sink.lines.count("RSET") == 20 - sink.connections


def test_idle_connections_are_closed_with_quit():
    with Sink() as sink:
        t = transport(f"*=127.0.0.1:{sink.port}", idle=0.3)

        async def go():
            [o] = await t.send("r.test", "a@sender.test", [Rcpt("ok@r.test")], MESSAGE, "", "")
            await asyncio.sleep(1.5)
            quits = sink.lines.count("QUIT")
            [again] = await t.send("r.test", "a@sender.test", [Rcpt("ok@r.test")], MESSAGE,
                                   "", "")
            await t.close()
            return o, again, quits
        first, again, quits_while_idle = run(go)
    assert first.status == again.status == "delivered"
    assert quits_while_idle == 1 and sink.connections == 2


def test_waiters_are_served_in_order():
    with Sink() as sink:
        t = transport(f"*=127.0.0.1:{sink.port}", limit=1)
        order = []

        async def one(i):
            await t.send("r.test", "a@sender.test", [Rcpt(f"slow0.05-{i}@r.test")], MESSAGE,
                         "", "")
            order.append(i)

        async def go():
            tasks = []
            for i in range(6):
                tasks.append(asyncio.create_task(one(i)))
                await asyncio.sleep(0.005)
            await asyncio.gather(*tasks)
            await t.close()
        started = time.monotonic()
        run(go)
    assert order == list(range(6)) and sink.connections == 1
    assert time.monotonic() - started < 10


def test_a_cancelled_waiter_leaves_no_slot_behind():
    with Sink() as sink:
        t = transport(f"*=127.0.0.1:{sink.port}", limit=1)

        async def go():
            first = asyncio.create_task(t.send("r.test", "a@sender.test",
                                               [Rcpt("slow0.3@r.test")], MESSAGE, "", ""))
            await asyncio.sleep(0.05)
            waiting = asyncio.create_task(t.send("r.test", "a@sender.test", [Rcpt("ok@r.test")],
                                                 MESSAGE, "", ""))
            await asyncio.sleep(0.05)
            waiting.cancel()  # a stopping worker cancels sends that wait their turn
            [done] = await first
            [after] = await asyncio.wait_for(
                t.send("r.test", "a@sender.test", [Rcpt("ok-2@r.test")], MESSAGE, "", ""), 5)
            counts = [p.count for p in t.pools._pools.values()]
            await t.close()
            return waiting.cancelled(), done, after, counts
        cancelled, done, after, counts = run(go)
    assert cancelled and done.status == after.status == "delivered"
    assert counts == [1] and sink.connections == 1


def test_a_starttls_fallback_is_carried_to_the_outcome(tmp_path):
    # RFC 7435: opportunistic TLS that fails goes on in the clear, and the record says so.
    with Sink(starttls=True, starttls_fail="handshake", cert_dir=tmp_path) as sink:
        t = transport(f"*=127.0.0.1:{sink.port}")
        [outcome] = send_all(t, "r.test", ["ok@r.test"])
    assert outcome.status == "delivered" and outcome.tls_version == ""
    assert "sent without TLS" in outcome.tls_note
