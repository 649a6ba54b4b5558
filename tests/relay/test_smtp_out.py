"""relay.smtp_out against the scriptable sink (tests/relay/sink.py) on 127.0.0.1: replies per
recipient, pipelining, SIZE, 8BITMIME, line ends, DSN parameters, TLS and its fallback, AUTH,
timeouts and lost connections, reuse with RSET."""
import asyncio
import re

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.mx import IMPLICIT, OPPORTUNISTIC, REQUIRED, Destination
from relay.smtp_out import Rcpt, Reply, Session, Timeouts, parse_reply, wire_message

from .sink import Sink
from .smtp_helpers import free_port

MESSAGE = b"From: a@sender.test\r\nTo: b@rcpt.test\r\nSubject: hi\r\n\r\nHello.\r\n"
HELO = "out.smtpeter.test"
FAST = Timeouts(connect=2, greeting=2, mail=2, rcpt=2, data_init=2, data_block=2, data_done=2)


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("sink-tls")


def dest(sink, tls=OPPORTUNISTIC, addresses=("127.0.0.1",), host="127.0.0.1", **kw):
    return Destination(host, tuple(addresses), sink.port, tls, **kw)


def send(destination, *rcpts, data=MESSAGE, mail_from="a@sender.test", ret="", envid="",
         timeouts=FAST, verify=None, session=None):
    async def go():
        s = session or Session(destination, HELO, timeouts, verify_context=verify)
        try:
            return await s.send(mail_from, [Rcpt(*r) if isinstance(r, tuple) else Rcpt(r)
                                            for r in rcpts], data, ret, envid)
        finally:
            if session is None:
                await s.quit()
    return asyncio.run(go())


def codes(result):
    return [(r.address, r.reply.code, r.reply.status) for r in result.recipients]


def no_bare_lf(raw: bytes) -> bool:
    return re.search(rb"(?<!\r)\n", raw) is None and re.search(rb"\r(?!\n)", raw) is None


@pytest.mark.parametrize("pipelining", [True, False])
def test_per_recipient_replies_in_one_transaction(pipelining):
    with Sink(pipelining=pipelining) as sink:
        result = send(dest(sink), "ok@r.test", "tempfail@r.test", "reject@r.test",
                      "ok-2@r.test")
    assert codes(result) == [("ok@r.test", 250, "2.0.0"), ("tempfail@r.test", 451, "4.2.0"),
                             ("reject@r.test", 550, "5.1.1"), ("ok-2@r.test", 250, "2.0.0")]
    assert result.recipients[2].reply.text == "No such user here"
    assert result.data_reply.code == 250 and "queued as Q1" in result.data_reply.text
    assert result.delivered == ["ok@r.test", "ok-2@r.test"]
    assert not result.host_failure and not result.dsn_passed
    assert (result.host, result.ip, result.port) == ("127.0.0.1", "127.0.0.1", sink.port)
    assert result.tls_version == "" and result.duration > 0
    [tx] = sink.received
    assert tx.rcpt_tos == ["ok@r.test", "ok-2@r.test"]
    assert tx.mail_line == "MAIL FROM:<a@sender.test>"
    assert tx.data == MESSAGE
    assert sink.lines[0] == f"EHLO {HELO}"
    assert sink.pipelined == [pipelining]


def test_size_is_passed_and_respected():
    with Sink(size=len(MESSAGE) + 10) as sink:
        ok = send(dest(sink), "ok@r.test")
        big = send(dest(sink), "ok@r.test", data=MESSAGE + b"x" * 100)
    assert ok.delivered == ["ok@r.test"]
    assert sink.received[0].mail_line == f"MAIL FROM:<a@sender.test> SIZE={len(MESSAGE)}"
    assert codes(big) == [("ok@r.test", 552, "5.3.4")]
    assert "exceeds" in big.recipients[0].reply.text and not big.host_failure
    assert len(sink.received) == 1 and sum(line.startswith("MAIL") for line in sink.lines) == 1


def test_8bit_body_goes_with_body_8bitmime_or_fails_5_6_3():
    data = "Subject: caf\u00e9\r\n\r\nd\u00e9j\u00e0 vu\r\n".encode()
    with Sink(eightbitmime=True) as sink:
        result = send(dest(sink), "ok@r.test", data=data)
        seven = send(dest(sink), "ok@r.test")
    assert result.delivered == ["ok@r.test"] and seven.delivered == ["ok@r.test"]
    assert sink.received[0].mail_line.endswith(" BODY=8BITMIME")
    assert sink.received[0].data == data
    assert "BODY" not in sink.received[1].mail_line
    with Sink(eightbitmime=False) as sink:
        refused = send(dest(sink), "ok@r.test", data=data)
    assert codes(refused) == [("ok@r.test", 554, "5.6.3")] and not sink.received


def test_line_ends_and_dots_on_the_wire():
    data = b"Subject: x\n\n.leading dot\r\nbare lf\nbare cr\rend\r\n.\r\n..two\nlast"
    with Sink() as sink:
        result = send(dest(sink), "ok@r.test", data=data)
    assert result.delivered == ["ok@r.test"]
    raw = bytes(sink.raw[0])
    assert no_bare_lf(raw)
    assert b"\r\n..leading dot\r\n" in raw and b"\r\n..\r\n" in raw and b"\r\n...two\r\n" in raw
    expected = (b"Subject: x\r\n\r\n.leading dot\r\nbare lf\r\nbare cr\r\nend\r\n.\r\n..two"
                b"\r\nlast\r\n")
    assert sink.received[0].data == expected
    assert wire_message(data)[1] == len(expected)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300).map(lambda b: b.replace(b"\x00", b"")) | st.lists(
    st.sampled_from([b"\r", b"\n", b".", b"\r\n", b"a", b"..", b"\r\n.\r\n"]), max_size=30
).map(b"".join))
def test_any_bytes_arrive_as_sent_with_crlf_line_ends(data):
    with Sink() as sink:
        result = send(dest(sink), "ok@r.test", data=data)
    assert result.delivered == ["ok@r.test"], result
    assert no_bare_lf(bytes(sink.raw[0]))
    normalised = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    if not normalised.endswith(b"\r\n"):
        normalised += b"\r\n"
    assert sink.received[0].data == normalised


def test_dsn_parameters_pass_on_as_received_when_offered():
    rcpts = [("ok@r.test", "SUCCESS,FAILURE", "rfc822;Odd+Name=x@Orig.test"),
             ("ok-2@r.test", "NEVER", ""), ("ok-3@r.test", "", "")]
    with Sink(dsn=True) as sink:
        result = send(dest(sink), *rcpts, ret="HDRS", envid="Env id+=1")
    assert result.dsn_passed and result.delivered == ["ok@r.test", "ok-2@r.test", "ok-3@r.test"]
    tx = sink.received[0]
    assert tx.mail_line.endswith(" RET=HDRS ENVID=Env+20id+2B+3D1")
    assert tx.rcpt_lines == [
        "RCPT TO:<ok@r.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Odd+2BName+3Dx@Orig.test",
        "RCPT TO:<ok-2@r.test> NOTIFY=NEVER", "RCPT TO:<ok-3@r.test>"]
    with Sink(dsn=False) as sink:
        plain = send(dest(sink), *rcpts, ret="FULL", envid="e")
    assert not plain.dsn_passed and len(plain.delivered) == 3
    assert sink.received[0].mail_line == "MAIL FROM:<a@sender.test>"
    assert sink.received[0].rcpt_lines[0] == "RCPT TO:<ok@r.test>"


def test_malformed_dsn_values_never_reach_the_wire():
    rcpts = [("ok@r.test", "FAILURE\r\nRSET", "rfc822;x@y.test"),
             ("ok-2@r.test", "SUCCESS", "bad type;x@y.test"), ("ok-3@r.test", "DELAY", "x")]
    with Sink(dsn=True) as sink:
        result = send(dest(sink), *rcpts, ret="FULL\r\nRSET", envid="e\r\nRSET")
    assert len(result.delivered) == 3 and "RSET" not in sink.lines
    assert sink.received[0].mail_line == "MAIL FROM:<a@sender.test> ENVID=e+0D+0ARSET"
    assert sink.received[0].rcpt_lines == ["RCPT TO:<ok@r.test> ORCPT=rfc822;x@y.test",
                                           "RCPT TO:<ok-2@r.test> NOTIFY=SUCCESS",
                                           "RCPT TO:<ok-3@r.test> NOTIFY=DELAY"]


def test_null_sender():
    with Sink() as sink:
        result = send(dest(sink), "ok@r.test", mail_from="")
    assert result.delivered == ["ok@r.test"]
    assert sink.received[0].mail_line == "MAIL FROM:<>"


def test_sender_refused_is_for_every_recipient():
    with Sink() as sink:
        permanent = send(dest(sink), "ok@r.test", "ok2@r.test", mail_from="reject@s.test")
        temporary = send(dest(sink), "ok@r.test", mail_from="tempfail@s.test")
    assert codes(permanent) == [("ok@r.test", 550, "5.7.1"), ("ok2@r.test", 550, "5.7.1")]
    assert codes(temporary) == [("ok@r.test", 451, "4.7.1")]
    assert not permanent.host_failure and not sink.received


def test_opportunistic_starttls_without_verification(cert_dir):
    with Sink(starttls=True, cert_dir=cert_dir) as sink:
        result = send(dest(sink, host="mx.elsewhere.test"), "ok@r.test")
    assert result.delivered == ["ok@r.test"]
    assert result.tls_version.startswith("TLSv1.") and result.tls_cipher
    assert sink.received[0].tls and not result.tls_note
    assert sink.lines[:3] == [f"EHLO {HELO}", "STARTTLS", f"EHLO {HELO}"]


@pytest.mark.parametrize("fail", ["refuse", "handshake"])
def test_starttls_failure_falls_back_to_plain_and_says_so(cert_dir, fail):
    with Sink(starttls=True, starttls_fail=fail, cert_dir=cert_dir) as sink:
        result = send(dest(sink), "ok@r.test")
    assert result.delivered == ["ok@r.test"]
    assert result.tls_version == "" and "sent without TLS" in result.tls_note
    assert sink.connections == 2 and not sink.received[0].tls


def test_required_tls_fails_instead_of_falling_back(cert_dir):
    with Sink() as sink:
        no_tls = send(dest(sink, tls=REQUIRED), "ok@r.test")
    assert codes(no_tls) == [("ok@r.test", 451, "4.7.10")] and no_tls.host_failure
    with Sink(starttls=True, starttls_fail="handshake", cert_dir=cert_dir) as sink:
        broken = send(dest(sink, tls=REQUIRED), "ok@r.test")
    assert codes(broken) == [("ok@r.test", 451, "4.7.10")] and sink.connections == 1
    with Sink(starttls=True, cert_dir=cert_dir) as sink:
        unverified = send(dest(sink, tls=REQUIRED), "ok@r.test")  # the system CA store
        verified = send(dest(sink, tls=REQUIRED), "ok@r.test", verify=sink.client_context())
    assert codes(unverified) == [("ok@r.test", 451, "4.7.10")]
    assert "certificate verify failed" in unverified.recipients[0].reply.text
    assert verified.delivered == ["ok@r.test"] and verified.tls_version
    assert len(sink.received) == 1


def test_implicit_tls_and_auth(cert_dir):
    with Sink(implicit_tls=True, auth={"relay": "s3cret"}, cert_dir=cert_dir) as sink:
        good = dest(sink, tls=IMPLICIT, username="relay", password="s3cret")
        ok = send(good, "ok@r.test", verify=sink.client_context())
        bad = dest(sink, tls=IMPLICIT, username="relay", password="wrong")
        refused = send(bad, "ok@r.test", verify=sink.client_context())
    assert ok.delivered == ["ok@r.test"] and ok.tls_version
    assert sink.received[0].authenticated == "relay" and sink.received[0].tls
    reply = refused.recipients[0].reply
    assert refused.host_failure and reply.temporary and "535" in reply.text
    assert "s3cret" not in " ".join(sink.lines) and "wrong" not in str(reply)


def test_credentials_never_go_without_tls():
    with Sink(auth={"relay": "s3cret"}) as sink:
        result = send(dest(sink, username="relay", password="s3cret"), "ok@r.test")
    assert codes(result) == [("ok@r.test", 451, "4.7.10")] and result.host_failure
    assert not any(line.startswith("AUTH") for line in sink.lines)


def test_connection_refused_then_next_address():
    closed = free_port()
    result = send(Destination("gone.test", ("127.0.0.1",), closed), "ok@r.test")
    assert codes(result) == [("ok@r.test", 451, "4.4.1")] and result.host_failure
    assert "connect failed" in result.recipients[0].reply.text
    with Sink() as sink:
        # 127.0.0.2 is loopback too, but nothing listens there on this port.
        result = send(dest(sink, addresses=("127.0.0.2", "127.0.0.1")), "ok@r.test")
    assert result.delivered == ["ok@r.test"] and result.ip == "127.0.0.1"


def test_greeting_refusal_is_a_host_failure():
    with Sink(greeting="554 5.7.1 No SMTP service here") as sink:
        result = send(dest(sink), "ok@r.test")
    reply = result.recipients[0].reply
    assert result.host_failure and (reply.code, reply.status) == (451, "4.7.1")
    assert "554 5.7.1 No SMTP service here" in reply.text and "greeting" in reply.text


def test_dropped_connection_at_rcpt():
    with Sink() as sink:
        result = send(dest(sink), "reject@r.test", "ok@r.test", "drop@r.test", "ok2@r.test")
    assert codes(result) == [("reject@r.test", 550, "5.1.1"), ("ok@r.test", 451, "4.4.2"),
                             ("drop@r.test", 451, "4.4.2"), ("ok2@r.test", 451, "4.4.2")]
    assert result.host_failure and not sink.received


def test_slow_reply_times_out():
    with Sink() as sink:
        result = send(dest(sink), "slow3@r.test",
                      timeouts=Timeouts(connect=2, greeting=2, mail=2, rcpt=0.5))
    reply = result.recipients[0].reply
    assert (reply.code, reply.status) == (451, "4.4.2") and "timed out" in reply.text
    assert result.host_failure and result.duration < 2.5


@pytest.mark.parametrize("behaviour, code, status, host_failure", [
    ("data451", 451, "4.3.0", False), ("data550", 550, "5.7.1", False),
    ("datadrop", 451, "4.4.2", True)])
def test_data_replies(behaviour, code, status, host_failure):
    with Sink() as sink:
        result = send(dest(sink), "reject@r.test", f"{behaviour}@r.test")
    assert codes(result) == [("reject@r.test", 550, "5.1.1"),
                             (f"{behaviour}@r.test", code, status)]
    assert result.host_failure is host_failure
    assert len(sink.received) == 1


def test_no_recipient_accepted_sends_no_data():
    with Sink() as sink:
        result = send(dest(sink), "reject@r.test", "tempfail@r.test")
    assert codes(result) == [("reject@r.test", 550, "5.1.1"), ("tempfail@r.test", 451, "4.2.0")]
    assert result.data_reply is None and not sink.received


def test_addresses_that_cannot_go_on_the_wire():
    with Sink() as sink:
        result = send(dest(sink), "bad\r\nRSET@r.test", "ok@r.test", "sp ace@r.test")
    assert codes(result) == [("bad\r\nRSET@r.test", 553, "5.1.3"), ("ok@r.test", 250, "2.0.0"),
                             ("sp ace@r.test", 553, "5.1.3")]
    assert sink.received[0].rcpt_tos == ["ok@r.test"]


@pytest.mark.parametrize("pipelining", [True, False])
def test_connection_reused_with_rset(cert_dir, pipelining):
    async def go(sink):
        session = Session(dest(sink), HELO, FAST)
        first = await session.send("a@s.test", [Rcpt("ok@r.test")], MESSAGE)
        second = await session.send("b@s.test", [Rcpt("reject@r.test"), Rcpt("ok@r.test")],
                                    MESSAGE)
        third = await session.send("c@s.test", [Rcpt("ok2@r.test")], MESSAGE)
        count = session.transactions
        await session.quit()
        return first, second, third, count

    with Sink(starttls=True, cert_dir=cert_dir, pipelining=pipelining) as sink:
        first, second, third, count = asyncio.run(go(sink))
    assert first.delivered == ["ok@r.test"] and second.delivered == ["ok@r.test"]
    assert third.delivered == ["ok2@r.test"] and count == 3
    assert sink.connections == 1 and sink.lines.count("RSET") == 2
    assert sink.lines[-1] == "QUIT" and [t.mail_line for t in sink.received] == [
        "MAIL FROM:<a@s.test>", "MAIL FROM:<b@s.test>", "MAIL FROM:<c@s.test>"]
    assert third.tls_version  # still the TLS connection
    assert sink.pipelined == [pipelining] * 3


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_connection_closed_while_idle_is_opened_again(pipelining):
    async def go(sink):
        session = Session(dest(sink), HELO, FAST)
        first = await session.send("a@s.test", [Rcpt("ok@r.test")], MESSAGE)
        sink.stop()  # closes every connection; then a new sink on the same port
        sink.start_on(sink.port)
        second = await session.send("a@s.test", [Rcpt("ok@r.test")], MESSAGE)
        await session.quit()
        return first, second

    sink = Sink(pipelining=pipelining).start()
    try:
        first, second = asyncio.run(go(sink))
    finally:
        sink.stop()
    assert first.delivered == ["ok@r.test"] and second.delivered == ["ok@r.test"]
    assert sink.connections == 1 and sink.received[0].mail_line == "MAIL FROM:<a@s.test>"


def test_works_on_uvloop(cert_dir):
    with Sink(starttls=True, dsn=True, cert_dir=cert_dir) as sink:
        async def go():
            session = Session(dest(sink), HELO, FAST)
            result = await session.send("a@s.test", [Rcpt("ok@r.test", "FAILURE")], MESSAGE)
            await session.quit()
            return result
        result = uvloop.run(go())
    assert result.delivered == ["ok@r.test"] and result.tls_version and result.dsn_passed


@pytest.mark.parametrize("lines, reply", [
    (["250 ok"], Reply(250, "2.0.0", "ok")),
    (["550-5.1.1 no such", "550 5.1.1 user"], Reply(550, "5.1.1", "no such user")),
    (["451 4.7.1 greylisted"], Reply(451, "4.7.1", "greylisted")),
    (["550 4.1.1 mismatched class"], Reply(550, "5.0.0", "4.1.1 mismatched class")),
    (["421"], Reply(421, "4.0.0", "")),
])
def test_parse_reply(lines, reply):
    assert parse_reply(lines) == reply
    assert str(Reply(550, "5.1.1", "no")) == "550 5.1.1 no"
