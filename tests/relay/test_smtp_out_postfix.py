"""relay.smtp_out against a real MTA: Debian's Postfix on a loopback port (tests/relay/postfix.py),
accepting one recipient and refusing another in the same transaction, over STARTTLS, with the
DSN parameters it takes on."""
import asyncio
import os

import pytest

from relay.mx import Destination
from relay.smtp_out import Rcpt, Session, Timeouts

from .postfix import DOMAIN, Postfix
from .smtp_helpers import require_tool

MESSAGE = (b"From: a@sender.test\r\nTo: root@postfix.test\r\nSubject: interop\r\n"
           b"Message-ID: <interop-1@sender.test>\r\n\r\n.a line with a dot\r\nbye\r\n")


@pytest.fixture(scope="module")
def postfix():
    require_tool("postfix")
    if os.geteuid() != 0:
        pytest.skip("a private Postfix instance needs root")
    server = Postfix().start()
    yield server
    server.stop()


def send(postfix, rcpts, data=MESSAGE):
    async def go():
        session = Session(Destination(f"mx.{DOMAIN}", ("127.0.0.1",), postfix.port),
                          "out.smtpeter.test", Timeouts(connect=5, greeting=10, mail=10,
                                                        rcpt=10, data_init=10, data_done=10))
        try:
            return await session.send("a@sender.test", rcpts, data, "HDRS", "env+1")
        finally:
            await session.quit()
    return asyncio.run(go())


def test_postfix_accepts_one_and_refuses_another(postfix):
    result = send(postfix, [Rcpt("root@postfix.test", "SUCCESS,FAILURE",
                                 "rfc822;Root+tag@postfix.test"),
                            Rcpt("nosuchuser@postfix.test")])
    ok, refused = result.recipients
    assert ok.reply.code == 250 and ok.reply.status == "2.0.0", result
    assert "queued as" in ok.reply.text
    assert (refused.reply.code, refused.reply.status) == (550, "5.1.1")
    assert "User unknown" in refused.reply.text
    assert result.dsn_passed and result.tls_version.startswith("TLSv1.") and not result.tls_note
    assert not result.host_failure
    queue_id = ok.reply.text.rsplit(" ", 1)[-1]
    postfix.wait_for_log(rf"{queue_id}: to=<root@postfix.test>.*status=sent")
    # NOTIFY=SUCCESS went on: Postfix reports the delivery to the sender with its own DSN.
    postfix.wait_for_log(rf"{queue_id}: sender delivery status notification")

def test_postfix_size_limit_is_respected_before_sending(postfix):
    result = send(postfix, [Rcpt("root@postfix.test")], data=MESSAGE + b"x" * 200_000)
    assert (result.recipients[0].reply.code, result.recipients[0].reply.status) == (552, "5.3.4")
    assert not result.host_failure
