"""Interoperability: mail submitted to a real runsmtp is delivered in mx mode to Debian's Postfix
on a loopback port (tests/relay/postfix.py, reached through RELAY_ROUTES), which accepts one
recipient and refuses the other in the same transaction. Mandatory under CI=true."""
import os
import signal

import pytest
from django.db import connection

from credentials import services
from events.models import Event
from relay.models import Attempt, Recipient

from .conftest import SERVER_ENV
from .postfix import DOMAIN, Postfix
from .smtp_helpers import Server, require_tool
from .test_delivery_mx import settled, states, submit, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def postfix():
    require_tool("postfix")
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true: a private Postfix instance needs root")
        pytest.skip("a private Postfix instance needs root")
    server = Postfix().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def relay_to_postfix(django_db_setup, django_db_blocker, tls_files, tmp_path_factory, postfix):
    with django_db_blocker.unblock():
        connection.ensure_connection()
    server = Server(cert=tls_files[0], key=tls_files[1],
                    workdir=tmp_path_factory.mktemp("runsmtp"),
                    env_extra={**SERVER_ENV, "DELIVERY_MODE": "mx",
                               "RELAY_ROUTES": f"{DOMAIN}=127.0.0.1:{postfix.port}"}).start()
    yield server
    server.stop(signal.SIGTERM)
    log = server.log_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]


def test_postfix_takes_one_recipient_and_refuses_the_other(relay_to_postfix, postfix, alice):
    login, password = services.create_login(alice)
    [queue_id] = submit(relay_to_postfix, login, password,
                        [f"root@{DOMAIN}", f"nosuchuser@{DOMAIN}"], "interop",
                        mail_options=["ENVID=interop-1"], rcpt_options=["NOTIFY=FAILURE"])
    wait_for(lambda: settled([queue_id]), what="both outcomes")
    assert states([queue_id]) == {f"root@{DOMAIN}": "delivered",
                                  f"nosuchuser@{DOMAIN}": "failed"}
    ok = Recipient.objects.get(address=f"root@{DOMAIN}")
    [attempt] = Attempt.objects.filter(recipient=ok)
    assert (attempt.host, attempt.ip, attempt.port, attempt.code) == (
        "127.0.0.1", "127.0.0.1", postfix.port, 250)
    assert attempt.tls_version.startswith("TLSv1.")
    postfix_id = attempt.text.rsplit(" ", 1)[-1]
    postfix.wait_for_log(rf"{postfix_id}: to=<root@{DOMAIN}>.*status=sent")
    postfix.wait_for_log(rf"{postfix_id}: from=<app@example.com>")

    refused = Recipient.objects.get(address=f"nosuchuser@{DOMAIN}")
    assert (refused.last_code, refused.last_enhanced) == (550, "5.1.1")
    assert "User unknown" in refused.last_response
    [failure] = Event.objects.filter(recipient=refused)
    assert (failure.type, failure.data["code"], failure.data["enhanced"]) == (
        "failure", 550, "5.1.1")
