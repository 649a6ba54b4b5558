"""The submission and mx listeners of a real `manage.py runsmtp`, over sockets, with real TLS."""
import smtplib
import threading
import time

import pytest
from django.contrib.auth.hashers import Argon2PasswordHasher

from credentials import services
from credentials.models import Login
from features.services import verp_key
from features.tokens import verp_address
from relay.esmtp_params import xtext_encode
from relay.models import Message, Recipient

from .smtp_helpers import HOST, LineClient, b64, old_tls_context

pytestmark = pytest.mark.django_db(transaction=True)

BODY = (
    b"From: App <app@example.com>\r\nTo: Bob <bob@example.org>\r\nSubject: hello\r\n"
    b"X-SMTPeter-TrackClicks: true\r\nX-SMTPeter-Tags: welcome, onboarding\r\n\r\n"
    b"Hello Bob,\r\n..a line that starts with a dot\r\n\r\nbye\r\n"
)


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def stored_body(message: Message) -> bytes:
    """The stored bytes after our Received header (which is the first header field)."""
    raw = bytes(message.raw)
    assert raw.startswith(b"Received: from ")
    end = raw.index(b"\r\n") + 2
    while raw[end : end + 1] == b"\t":  # folded continuation lines
        end = raw.index(b"\r\n", end) + 2
    return raw[end:]


def authed(server, login, port=None, **kw) -> LineClient:
    """STARTTLS + AUTH PLAIN on the STARTTLS port (or AUTH on the implicit-TLS one)."""
    if port is None or port == server.starttls_port:
        c = LineClient(server, server.starttls_port, **kw)
        c.cmd("EHLO client.test")
        c.starttls()
    else:
        c = LineClient(server, port, implicit_tls=True, **kw)
    assert c.cmd("EHLO client.test").code == 250
    r = c.auth_plain(login[0].username, login[1])
    assert r.code == 235, r
    return c


# -- listeners, EHLO, TLS --------------------------------------------------------------


def test_implicit_tls_listener_offers_and_accepts_auth(smtp_server, login):
    with smtplib.SMTP_SSL(HOST, smtp_server.tls_port, context=smtp_server.client_context()) as s:
        code, _ = s.ehlo("client.test")
        assert code == 250
        assert s.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        assert s.esmtp_features["size"] == "200000"
        for keyword in ("8bitmime", "pipelining", "enhancedstatuscodes", "dsn"):
            assert keyword in s.esmtp_features
        assert "starttls" not in s.esmtp_features and "smtputf8" not in s.esmtp_features
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
        s.login(login[0].username, login[1])
        refused = s.sendmail("app@example.com", ["bob@example.org"], BODY)
        assert refused == {}
    message = Message.objects.get()
    assert stored_body(message) == BODY
    assert message.login == login[0] and message.owner == login[0].owner
    assert message.features["clicktracking"] is True  # the header override
    assert message.features["inlinecss"] is False
    assert message.tags == ["welcome", "onboarding"]
    assert message.client_ip == "127.0.0.1" and message.tls_version.startswith("TLSv1.")
    assert message.helo == "client.test" and message.size == len(bytes(message.raw))
    assert list(message.recipients.values_list("address", "state")) == [
        ("bob@example.org", "queued")
    ]
    assert wait_for(lambda: Login.objects.get(pk=login[0].pk).last_used is not None)


def test_received_header_names_the_session(smtp_server, login):
    c = authed(smtp_server, login)
    c.cmd("MAIL FROM:<app@example.com>")
    c.cmd("RCPT TO:<bob@example.org>")
    assert c.cmd("DATA").code == 354
    c.send(b"Subject: x\r\n\r\nhi\r\n.\r\n")
    r = c.reply()
    assert r.code == 250 and r.text.startswith("2.0.0 Ok: queued as ")
    queue_id = r.text.rsplit(" ", 1)[1]
    raw = bytes(Message.objects.get(queue_id=queue_id).raw).decode()
    header = raw.split("\r\nSubject: x")[0]
    assert header.startswith("Received: from client.test ([127.0.0.1])\r\n\t(using TLSv1.")
    assert f"\tby relay.test (smtpeter) with ESMTPSA id {queue_id}\r\n" in header
    assert "\tfor <bob@example.org>;\r\n\t" in header
    assert header.endswith("+0000")


def test_starttls_port_offers_no_auth_before_tls(smtp_server):
    c = LineClient(smtp_server, smtp_server.starttls_port)
    assert c.greeting.code == 220 and "relay.test" in c.greeting.text
    ehlo = c.cmd("EHLO client.test")
    assert "STARTTLS" in ehlo.lines and not any(x.startswith("AUTH") for x in ehlo.lines)
    r = c.cmd("AUTH PLAIN " + b64("\0user\0pass"))
    assert (r.code, r.text[:7]) == (538, "5.7.11 ")
    assert "(starttls port): 538 5.7.11" in wait_for(smtp_server.log_text)
    r = c.cmd("MAIL FROM:<app@example.com>")
    assert (r.code, r.text[:6]) == (530, "5.7.0 ")
    c.starttls()
    ehlo = c.cmd("EHLO client.test")
    assert "AUTH PLAIN LOGIN" in ehlo.lines and "STARTTLS" not in ehlo.lines
    assert c.cmd("STARTTLS").code == 503


def test_starttls_reply_and_auth_after_helo_carry_enhanced_codes(smtp_server, login):
    c = LineClient(smtp_server, smtp_server.starttls_port)
    assert c.cmd("AUTH PLAIN").text == "5.5.1 Error: send EHLO first"
    c.cmd("EHLO client.test")
    r = c.starttls()
    assert r.text == "2.0.0 Ready to start TLS"
    assert c.cmd("HELO client.test").code == 250
    r = c.auth_plain(login[0].username, login[1])
    assert (r.code, r.text) == (503, "5.5.1 Send EHLO first"), r
    assert c.cmd("EHLO client.test").code == 250
    assert c.auth_plain(login[0].username, login[1]).code == 235


def test_tls_older_than_1_2_is_refused(smtp_server):
    import ssl

    ctx = old_tls_context(smtp_server)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        smtplib.SMTP_SSL(HOST, smtp_server.tls_port, context=ctx, timeout=5).ehlo()


def test_starttls_discards_commands_pipelined_after_it(smtp_server):
    c = LineClient(smtp_server, smtp_server.starttls_port)
    c.cmd("EHLO client.test")
    c.send(b"STARTTLS\r\nRSET\r\n")
    assert c.reply().code == 220
    c.sock = smtp_server.client_context().wrap_socket(c.sock, server_hostname=HOST)
    c.send(b"NOOP\r\nQUIT\r\n")
    replies = [c.reply(), c.reply()]
    assert [r.code for r in replies] == [250, 221]
    assert c.closed()  # no third reply: the pipelined RSET was never run


def test_replies_to_pipelined_commands_go_out_together_and_in_order(smtp_server, login):
    c = authed(smtp_server, login)
    c.send(b"MAIL FROM:<app@example.com>\r\nRCPT TO:<bob@example.org>\r\n"
           b"RCPT TO:<not an address>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n")
    # One TLS record holds every reply: the first read of the socket returns all five.
    first = c.sock.recv(65536)
    assert first.count(b"\r\n") == 5, first
    c.buf = first
    assert [c.reply().code for _ in range(5)] == [250, 250, 553, 250, 354]
    c.send(BODY + b".\r\nQUIT\r\n")
    assert c.reply().code == 250 and c.reply().code == 221
    message = wait_for(lambda: Message.objects.filter(mail_from="app@example.com").first())
    assert sorted(message.recipients.values_list("address", flat=True)) == [
        "bob@example.org", "carol@example.org"]


def test_pipelined_replies_are_sent_before_the_session_is_closed(smtp_server):
    # aiosmtpd closes the connection after the fifth unknown command (502 "goodbye"); the
    # replies held for pipelined commands, and that 502, must reach the client first.
    c = LineClient(smtp_server, smtp_server.mx_port)
    c.send(b"EHLO client.test\r\nNOOP\r\n" + b"BOGUS\r\n" * 5 + b"NOOP\r\n")
    codes = [c.reply().code for _ in range(7)]
    assert codes == [250, 250, 500, 500, 500, 500, 502], codes
    assert c.closed()


# -- AUTH ------------------------------------------------------------------------------
# -- AUTH ------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
@pytest.mark.parametrize("initial", [True, False], ids=["initial-response", "challenge"])
def test_auth_mechanisms_with_and_without_initial_response(smtp_server, login, mechanism,
                                                             initial):
    username, password = login[0].username, login[1]
    c = LineClient(smtp_server, smtp_server.tls_port, implicit_tls=True)
    c.cmd("EHLO client.test")
    if mechanism == "PLAIN":
        blob = b64(f"\0{username}\0{password}")
        if initial:
            r = c.cmd(f"AUTH PLAIN {blob}")
        else:
            assert c.cmd("AUTH PLAIN").code == 334
            r = c.cmd(blob)
    else:
        if initial:
            r = c.cmd(f"AUTH LOGIN {b64(username)}")
        else:
            r = c.cmd("auth login")
            assert r.code == 334 and r.text == b64("Username:")
            r = c.cmd(b64(username))
        assert r.code == 334 and r.text == b64("Password:")
        r = c.cmd(b64(password))
    assert (r.code, r.text[:6]) == (235, "2.7.0 "), r
    assert c.cmd("MAIL FROM:<app@example.com>").code == 250


def test_wrong_or_disabled_credentials_get_535(smtp_server, login, alice):
    c = LineClient(smtp_server, smtp_server.tls_port, implicit_tls=True, source_ip="127.0.0.21")
    c.cmd("EHLO client.test")
    r = c.auth_plain(login[0].username, login[1] + "x")
    assert (r.code, r.text[:6]) == (535, "5.7.8 ")
    services.set_enabled(login[0], False, actor=alice)
    r = c.auth_plain(login[0].username, login[1])
    assert (r.code, r.text[:6]) == (535, "5.7.8 ")
    assert "AUTH failed: ip=127.0.0.21" in smtp_server.log_text()
    assert login[1] not in smtp_server.log_text()


def test_cached_credentials_follow_password_reset_and_disable(smtp_server, login, alice):
    authed(smtp_server, login).close()  # now cached
    authed(smtp_server, login).close()  # a cache hit
    services.reset_password(login[0], actor=alice)
    c = LineClient(smtp_server, smtp_server.tls_port, implicit_tls=True, source_ip="127.0.0.22")
    c.cmd("EHLO client.test")
    assert c.auth_plain(login[0].username, login[1]).code == 535


def test_a_cached_pair_stops_working_when_the_login_is_disabled(smtp_server, login, alice):
    authed(smtp_server, login).close()  # verified with argon2, now cached
    authed(smtp_server, login).close()
    username = login[0].username
    assert wait_for(lambda: smtp_server.log_text().count(
        f"username={username!r} verified=cache") == 1)
    services.set_enabled(login[0], False, actor=alice)
    c = LineClient(smtp_server, smtp_server.tls_port, implicit_tls=True, source_ip="127.0.0.23")
    c.cmd("EHLO client.test")
    r = c.auth_plain(username, login[1])
    assert (r.code, r.text[:6]) == (535, "5.7.8 "), r


def test_mail_before_auth_and_unknown_mechanism(smtp_server):
    c = LineClient(smtp_server, smtp_server.tls_port, implicit_tls=True)
    c.cmd("EHLO client.test")
    r = c.cmd("MAIL FROM:<app@example.com>")
    assert (r.code, r.text[:6]) == (530, "5.7.0 ")
    r = c.cmd("RCPT TO:<bob@example.org>")
    assert r.code == 530
    r = c.cmd("AUTH CRAM-MD5")
    assert (r.code, r.text[:6]) == (504, "5.5.4 ")


def test_failed_auth_is_throttled_per_ip(smtp_server, login):
    c = LineClient(smtp_server, smtp_server.tls_port, implicit_tls=True, source_ip="127.0.0.31")
    c.cmd("EHLO client.test")
    for i in range(3):  # three different usernames: only the IP's count reaches the limit
        assert c.auth_plain(f"smtp-nobody{i}", "wrong").code == 535
    r = c.auth_plain(login[0].username, login[1])  # even the right password now
    assert (r.code, r.text[:6]) == (454, "4.7.0 ")
    other = LineClient(smtp_server, smtp_server.tls_port, implicit_tls=True,
                       source_ip="127.0.0.31")
    other.cmd("EHLO client.test")
    assert other.auth_plain("smtp-someoneelse", "x").code == 454
    assert "AUTH throttled: ip=127.0.0.31" in smtp_server.log_text()
    # Another IP with the right password is not affected by this IP's failures.
    authed(smtp_server, login, source_ip="127.0.0.32").close()


def test_noop_is_answered_while_a_real_argon2_check_runs(smtp_server, alice):
    # The real default cost (~100 MiB, ~120 ms), not the quick test hasher.
    hasher = Argon2PasswordHasher()
    login, _ = services.create_login(alice)
    Login.objects.filter(pk=login.pk).update(
        password_hash=hasher.encode("the-real-password", hasher.salt())
    )
    noop = LineClient(smtp_server, smtp_server.tls_port, implicit_tls=True)
    noop.cmd("EHLO client.test")
    clients = []
    for i in range(3):
        c = LineClient(smtp_server, smtp_server.tls_port, implicit_tls=True,
                       source_ip=f"127.0.0.{51 + i}")
        c.cmd("EHLO client.test")
        clients.append(c)
    results = []

    def auth(c, password):
        started = time.monotonic()
        results.append((c.auth_plain(login.username, password).code, time.monotonic() - started))

    threads = [
        threading.Thread(target=auth, args=(c, pw))
        for c, pw in zip(clients, ["the-real-password", "wrong-1", "wrong-2"], strict=True)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    answered, worst = 0, 0.0
    while any(t.is_alive() for t in threads):
        t0 = time.monotonic()
        assert noop.cmd("NOOP").code == 250
        worst = max(worst, time.monotonic() - t0)
        answered += 1
    auth_time = time.monotonic() - started
    for t in threads:
        t.join()
    assert sorted(code for code, _ in results) == [235, 535, 535]
    # Three argon2 checks take far longer than a NOOP round trip: a blocked loop would
    # answer no NOOP at all until the checks were done.
    assert auth_time > 0.1
    assert answered >= 5, (answered, auth_time)
    assert worst < auth_time / 2, (worst, auth_time)


# -- the envelope ----------------------------------------------------------------------


def test_dsn_parameters_are_validated_decoded_and_kept_in_case(smtp_server, login):
    c = authed(smtp_server, login)
    envid = "Queue+ID=Case Kept"
    r = c.cmd(f"MAIL FROM:<App@Example.com> ret=hdrs ENVID={xtext_encode(envid)} SIZE=100")
    assert r.code == 250, r
    r = c.cmd("RCPT TO:<Bob@Example.org> NOTIFY=success,delay "
              f"ORCPT=rfc822;{xtext_encode('Bob+Original@Example.ORG')}")
    assert r.code == 250, r
    r = c.cmd("RCPT TO:<carol@example.org> NOTIFY=NEVER")
    assert r.code == 250, r
    for bad in ["NOTIFY=NEVER,SUCCESS", "NOTIFY=SUCCESS,SUCCESS", "NOTIFY=SOMETIMES",
                "ORCPT=rfc822", "ORCPT=rfc822;bad+zzxtext", "NOTIFY="]:
        r = c.cmd(f"RCPT TO:<dave@example.org> {bad}")
        assert (r.code, r.text[:6]) == (501, "5.5.4 "), (bad, r)
    r = c.cmd("RCPT TO:<dave@example.org> FOO=BAR")
    assert (r.code, r.text[:6]) == (555, "5.5.4 ")
    assert c.cmd("DATA").code == 354
    c.send(b"Subject: dsn\r\n\r\nbody\r\n.\r\n")
    assert c.reply().code == 250
    message = Message.objects.get()
    assert (message.mail_from, message.ret, message.envid) == ("App@Example.com", "HDRS", envid)
    recipients = list(message.recipients.values_list("address", "notify", "orcpt"))
    assert recipients == [
        ("Bob@Example.org", "SUCCESS,DELAY", "rfc822;Bob+Original@Example.ORG"),
        ("carol@example.org", "NEVER", ""),
    ]


@pytest.mark.parametrize("params,code", [
    ("RET=BOTH", 501), ("ENVID=a=b", 501), ("ENVID=" + "x" * 101, 501), ("BODY=BINARYMIME", 501),
    ("SMTPUTF8", 555), ("SIZE=abc", 501), ("RET=FULL RET=HDRS", 501), ("SIZE=200001", 552),
])
def test_bad_mail_parameters(smtp_server, login, params, code):
    c = authed(smtp_server, login)
    r = c.cmd(f"MAIL FROM:<app@example.com> {params}")
    assert r.code == code, r
    assert r.text[:6] in ("5.5.4 ", "5.3.4 ")
    assert c.cmd("MAIL FROM:<app@example.com>").code == 250  # the session goes on


def test_null_sender_is_accepted(smtp_server, login):
    c = authed(smtp_server, login)
    assert c.cmd("MAIL FROM:<>").code == 250
    assert c.cmd("RCPT TO:<bob@example.org>").code == 250
    c.cmd("DATA")
    c.send(b"Subject: null\r\n\r\nx\r\n.\r\n")
    assert c.reply().code == 250
    assert Message.objects.get().mail_from == ""


def test_message_over_the_size_limit_is_refused(smtp_server, login):
    c = authed(smtp_server, login)
    c.cmd("MAIL FROM:<app@example.com>")
    c.cmd("RCPT TO:<bob@example.org>")
    assert c.cmd("DATA").code == 354
    c.send(b"Subject: big\r\n\r\n" + (b"x" * 900 + b"\r\n") * 250 + b".\r\n")
    r = c.reply()
    assert (r.code, r.text[:6]) == (552, "5.3.4 ")
    assert c.cmd("NOOP").code == 250
    assert not Message.objects.exists()


def test_too_many_recipients(smtp_server, login):
    c = authed(smtp_server, login)
    c.cmd("MAIL FROM:<app@example.com>")
    for i in range(5):
        assert c.cmd(f"RCPT TO:<r{i}@example.org>").code == 250
    r = c.cmd("RCPT TO:<r5@example.org>")
    assert (r.code, r.text[:6]) == (452, "4.5.3 ")
    c.cmd("DATA")
    c.send(b"Subject: many\r\n\r\nx\r\n.\r\n")
    assert c.reply().code == 250
    assert Recipient.objects.count() == 5


def test_syntax_errors_get_enhanced_codes(smtp_server, login):
    c = authed(smtp_server, login)
    for line, code in [("MAIL FROM:app@example.com<", (501, 553)), ("MAIL TO:<a@b.c>", (501,)),
                       ("MAIL FROM:<noatsign>", (553,)), ("MAIL FROM:<a b@c.d>", (553,)),
                       ("FOO", (500,)), ("RCPT TO:<b@c.d>", (503,)), ("DATA", (503,)),
                       ("MAIL", (501,))]:
        r = c.cmd(line)
        assert r.code in code, (line, r)
        assert r.text[:2] == "5." and r.text[5] == " ", (line, r)


def test_long_lines_are_refused_cleanly(smtp_server, login):
    c = authed(smtp_server, login)
    r = c.cmd("NOOP " + "x" * 3000)
    assert (r.code, r.text[:6]) == (500, "5.5.2 ")
    c.cmd("MAIL FROM:<app@example.com>")
    c.cmd("RCPT TO:<bob@example.org>")
    c.cmd("DATA")
    c.send(b"Subject: long\r\n\r\n" + b"y" * 999 + b"\r\n.\r\n")
    r = c.reply()
    assert (r.code, r.text[:6]) == (500, "5.5.2 ")
    c.cmd("MAIL FROM:<app@example.com>")
    c.cmd("RCPT TO:<bob@example.org>")
    c.cmd("DATA")
    # 998 octets is the limit, and a dot-stuffed 998-octet line is fine too.
    c.send(b"Subject: long\r\n\r\n" + b"y" * 998 + b"\r\n.." + b"z" * 997 + b"\r\n.\r\n")
    assert c.reply().code == 250
    assert stored_body(Message.objects.get()).endswith(b"y" * 998 + b"\r\n." + b"z" * 997 + b"\r\n")


@pytest.mark.parametrize("payload", [
    b"Subject: a\r\n\r\nline\n.\nMAIL FROM:<evil@example.com>\nRCPT TO:<v@example.org>\n",
    b"Subject: a\r\n\r\nline\r\n.\nMAIL FROM:<evil@example.com>\r\n",
    b"Subject: a\r\n\r\nline\n.\r\nMAIL FROM:<evil@example.com>\r\n",
    b"Subject: a\r\n\r\nline\r.\rMAIL FROM:<evil@example.com>\r\n",
    b"Subject: a\r\n\r\nbare cr\r in a line\r\n",
])
def test_bare_cr_or_lf_is_refused_and_nothing_is_smuggled(smtp_server, login, payload):
    c = authed(smtp_server, login)
    c.cmd("MAIL FROM:<app@example.com>")
    c.cmd("RCPT TO:<bob@example.org>")
    assert c.cmd("DATA").code == 354
    c.send(payload + b"DATA\r\nmore\r\n.\r\n")
    r = c.reply()
    assert (r.code, r.text[:6]) == (550, "5.6.0 "), r
    # Exactly one reply: nothing inside the message was run as a command.
    c.send(b"NOOP\r\n")
    assert c.reply().code == 250
    assert c.buf == b""
    assert not Message.objects.exists()


# -- relaying rules --------------------------------------------------------------------


def test_no_open_relay(smtp_server):
    mx = LineClient(smtp_server, smtp_server.mx_port)
    ehlo = mx.cmd("EHLO mta.example.net")
    assert "STARTTLS" in ehlo.lines and not any(x.startswith("AUTH") for x in ehlo.lines)
    assert mx.cmd("MAIL FROM:<someone@example.net>").code == 250
    r = mx.cmd("RCPT TO:<victim@example.org>")
    assert (r.code, r.text[:6]) == (550, "5.7.1 ")
    r = mx.cmd("RCPT TO:<x@sub.bounces.test>")
    assert r.code == 550
    sub = LineClient(smtp_server, smtp_server.tls_port, implicit_tls=True)
    sub.cmd("EHLO mta.example.net")
    r = sub.cmd("RCPT TO:<victim@example.org>")
    assert (r.code, r.text[:6]) == (530, "5.7.0 ")
    assert not Message.objects.exists()


def test_mx_accepts_unauthenticated_mail_for_the_bounce_domain(smtp_server, transactional_db):
    with smtplib.SMTP(HOST, smtp_server.mx_port) as s:
        s.ehlo("mta.example.net")
        s.starttls(context=smtp_server.client_context())  # offered, not required
        s.ehlo("mta.example.net")
        verp = verp_address(verp_key(), 123, 456, "Bounces.Test")  # any case of the domain
        s.sendmail("", [verp], b"Subject: Undelivered\r\n\r\nreport\r\n")
    with smtplib.SMTP(HOST, smtp_server.mx_port) as s:  # and without TLS too
        s.sendmail("", ["fbl@bounces.test"], b"Subject: Report\r\n\r\narf\r\n")
    messages = list(Message.objects.order_by("id"))
    assert [m.kind for m in messages] == ["bounce", "bounce"]
    assert [m.login for m in messages] == [None, None]
    assert messages[0].tls_version and not messages[1].tls_version
    assert b"with ESMTPS id" in bytes(messages[0].raw)
    assert b"with ESMTP id" in bytes(messages[1].raw)


def test_mx_takes_authenticated_submissions_after_starttls(smtp_server, login):
    c = LineClient(smtp_server, smtp_server.mx_port)
    c.cmd("EHLO client.test")
    assert c.auth_plain(login[0].username, login[1]).code == 538
    c.starttls()
    c.cmd("EHLO client.test")
    assert c.auth_plain(login[0].username, login[1]).code == 235
    c.cmd("MAIL FROM:<app@example.com>")
    assert c.cmd("RCPT TO:<bob@example.org>").code == 250


# -- connections -----------------------------------------------------------------------


def test_a_client_that_disconnects_during_data_leaves_nothing(smtp_server, login):
    c = authed(smtp_server, login)
    c.cmd("MAIL FROM:<app@example.com>")
    c.cmd("RCPT TO:<bob@example.org>")
    assert c.cmd("DATA").code == 354
    c.send(b"Subject: cut\r\n\r\nhalf a message\r\n")
    time.sleep(0.2)  # the server has read the half message before the connection goes
    c.close()
    time.sleep(0.3)
    # A message sent afterwards is committed when its 250 comes: anything the cut session
    # had handed to the queue writer would be committed by then too.
    other = authed(smtp_server, login)
    assert other.send_message(b"Subject: whole\r\n\r\nx\r\n").code == 250
    assert [b"Subject: whole" in bytes(m.raw) for m in Message.objects.all()] == [True]


def test_idle_connections_are_closed_with_421(smtp_server):
    c = LineClient(smtp_server, smtp_server.starttls_port, timeout=15)
    c.cmd("EHLO client.test")
    started = time.monotonic()
    r = c.reply()
    assert (r.code, r.text[:6]) == (421, "4.4.2 ")
    assert 4 < time.monotonic() - started < 12
    assert c.closed()


def test_idle_timeout_counts_from_the_last_data_line(smtp_server, login):
    c = authed(smtp_server, login)
    c.cmd("MAIL FROM:<app@example.com>")
    c.cmd("RCPT TO:<bob@example.org>")
    c.cmd("DATA")
    c.send(b"Subject: slow\r\n\r\n")
    for _ in range(3):  # 6 s of slow DATA lines: longer than the 5 s timeout, never idle
        time.sleep(2)
        c.send(b"line\r\n")
    c.send(b".\r\n")
    assert c.reply().code == 250
    started = time.monotonic()
    r = c.reply()
    assert (r.code, r.text[:6]) == (421, "4.4.2 ")
    assert 4 < time.monotonic() - started < 12
    assert c.closed()


def test_connections_per_ip_are_capped(smtp_server):
    clients = [LineClient(smtp_server, smtp_server.starttls_port, source_ip="127.0.0.61")
               for _ in range(30)]
    assert all(c.greeting.code == 220 for c in clients)
    extra = LineClient(smtp_server, smtp_server.starttls_port, source_ip="127.0.0.61")
    assert (extra.greeting.code, extra.greeting.text[:6]) == (421, "4.7.0 ")
    assert extra.closed()
    assert LineClient(smtp_server, smtp_server.starttls_port,
                      source_ip="127.0.0.62").greeting.code == 220
    clients.pop().close()
    assert wait_for(
        lambda: LineClient(smtp_server, smtp_server.starttls_port,
                           source_ip="127.0.0.61").greeting.code == 220
    )


# -- the queue -------------------------------------------------------------------------


def test_concurrent_sessions_each_get_their_own_message_back(smtp_server, login):
    """Group commit stores many sessions' messages together: nothing may be crossed."""
    replies = {}

    def send(n):
        with smtplib.SMTP_SSL(HOST, smtp_server.tls_port,
                              context=smtp_server.client_context()) as s:
            s.login(login[0].username, login[1])
            for i in range(5):
                body = f"Subject: {n}-{i}\r\n\r\nbody of {n}-{i}\r\n".encode()
                rcpts = [f"r{n}-{i}-{k}@example.org" for k in range(1 + (n + i) % 3)]
                s.mail(f"s{n}@example.com")
                for r in rcpts:
                    s.rcpt(r)
                code, reply = s.data(body)
                assert code == 250
                replies[reply.decode().rsplit(" ", 1)[1]] = (f"s{n}@example.com", rcpts, body)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(replies) == 40
    for message in Message.objects.prefetch_related("recipients"):
        sender, rcpts, body = replies.pop(message.queue_id)
        assert message.mail_from == sender
        assert [r.address for r in message.recipients.all()] == rcpts
        assert stored_body(message) == body
    assert replies == {}


def test_concurrent_failures_from_one_ip_are_counted_one_after_another(smtp_server, alice):
    """Parallel connections buy no parallel guesses: checks from one IP run in turn."""
    hasher = Argon2PasswordHasher()  # the real cost, so that the attempts truly overlap
    login, _ = services.create_login(alice)
    Login.objects.filter(pk=login.pk).update(password_hash=hasher.encode("pw", hasher.salt()))
    clients = []
    for _ in range(4):
        c = LineClient(smtp_server, smtp_server.tls_port, implicit_tls=True,
                       source_ip="127.0.0.71")
        c.cmd("EHLO client.test")
        clients.append(c)
    assert clients[0].auth_plain(login.username, "guess-0").code == 535
    assert clients[0].auth_plain(login.username, "guess-1").code == 535
    codes = []
    threads = [
        threading.Thread(target=lambda c=c, i=i: codes.append(
            c.auth_plain(login.username, f"guess-{i + 2}").code))
        for i, c in enumerate(clients[1:])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The third failure reaches the limit (3); the attempts that waited for it are refused.
    assert sorted(codes) == [454, 454, 535]
