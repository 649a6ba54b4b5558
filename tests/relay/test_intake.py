"""relay.intake as plain functions: what a stored intake message becomes (events, recipient
states, suppression entries), linked through VERP, the Return-Path or our queue id; and that
reading it twice records nothing twice."""
import pytest
from django.conf import settings

from events.models import Event
from features.tokens import verp_address
from relay import intake
from relay.models import Message, Recipient, SoftBounce, Suppression
from relay.reports import parse_report
from smtpeter_site.keys import key_for

from . import intake_samples as samples

pytestmark = pytest.mark.django_db


def sent(owner, address="user@remote.test", state=Recipient.State.DELIVERED, others=()):
    message = Message.objects.create(owner=owner, mail_from="app@example.com", raw=b"x")
    recipient = Recipient.objects.create(message=message, address=address, state=state)
    for other in others:
        Recipient.objects.create(message=message, address=other, state=state)
    verp = verp_address(key_for("verp"), message.pk, recipient.pk, settings.BOUNCE_DOMAIN)
    return message, recipient, verp


def arrived(raw: bytes, to: str) -> Message:
    message = Message.objects.create(kind=Message.Kind.BOUNCE, mail_from="", raw=raw)
    Recipient.objects.create(message=message, address=to, state=Recipient.State.INTAKE)
    return message


def test_a_hard_bounce_to_a_verp_address_is_recorded_once_however_often_it_is_read(alice):
    message, recipient, verp = sent(alice)
    bounce = arrived(samples.dsn(verp, recipient.address), verp)
    assert intake.pending() == [bounce.pk]
    assert intake.process_one(bounce.pk) == "bounce"
    assert intake.process_one(bounce.pk) is None  # read already: nothing twice
    [event] = Event.objects.filter(type="bounce")
    assert (event.message_id, event.recipient_id) == (message.pk, recipient.pk)
    assert {k: event.data[k] for k in ("status", "class", "reason", "remote_mta", "intake",
                                       "via")} == {
        "status": "5.1.1", "class": "hard", "reason": "invalid_recipient",
        "remote_mta": "mx.remote.test", "intake": bounce.queue_id, "via": "verp"}
    assert "User unknown" in event.data["diagnostic"]
    recipient.refresh_from_db()
    assert recipient.state == "bounced"
    [entry] = Suppression.objects.filter(owner=alice)
    assert (entry.address, entry.reason, entry.event_id) == (recipient.address, "hard_bounce",
                                                             event.pk)
    bounce.refresh_from_db()
    assert (bounce.intake_outcome, bounce.intake_for_id) == ("bounce", message.pk)
    assert bounce.intake_done_at is not None and intake.pending() == []


def test_a_soft_bounce_counts_towards_suppression_and_a_failed_recipient_stays_failed(alice):
    message, recipient, verp = sent(alice, state=Recipient.State.FAILED)
    bounce = arrived(samples.dsn(verp, recipient.address, "4.2.2",
                                 "552 4.2.2 Mailbox full", action="failed"), verp)
    assert intake.process_one(bounce.pk) == "bounce"
    [event] = Event.objects.filter(type="bounce")
    assert (event.data["class"], event.data["reason"]) == ("soft", "mailbox_full")
    recipient.refresh_from_db()
    assert recipient.state == "failed"
    assert not Suppression.objects.exists()
    assert SoftBounce.objects.get().event_id == event.pk


def test_a_delayed_notice_is_no_bounce(alice):
    message, recipient, verp = sent(alice)
    notice = arrived(samples.dsn(verp, recipient.address, "4.4.1", "Connection timed out",
                                 action="delayed"), verp)
    assert intake.process_one(notice.pk) == "delayed"
    assert not Event.objects.exists() and not Suppression.objects.exists()
    recipient.refresh_from_db()
    assert recipient.state == "delivered"


def test_an_arf_report_to_fbl_is_linked_through_the_return_path(alice):
    message, recipient, verp = sent(alice)
    report = arrived(samples.arf(f"fbl@{settings.BOUNCE_DOMAIN}", verp, recipient.address),
                     f"fbl@{settings.BOUNCE_DOMAIN}")
    assert intake.process_one(report.pk) == "complaint"
    [event] = Event.objects.filter(type="complaint")
    assert (event.message_id, event.recipient_id) == (message.pk, recipient.pk)
    assert (event.data["feedback_type"], event.data["source_ip"], event.data["via"]) == (
        "abuse", "192.0.2.1", "return-path")
    assert Suppression.objects.get(owner=alice).reason == "complaint"
    recipient.refresh_from_db()
    assert recipient.state == "delivered"  # a complaint is no bounce


def test_an_arf_report_is_linked_through_our_queue_id_only_to_a_recipient_it_names(alice):
    message, recipient, _ = sent(alice, others=["other@remote.test"])
    received = (f"Received: from app ([127.0.0.1])\n\tby relay.test (smtpeter) with ESMTPSA "
                f"id {message.queue_id};\n\tSun, 29 Nov 2026 09:54:00 +0000\n")
    report = arrived(samples.arf("abuse@" + settings.BOUNCE_DOMAIN, "app@example.com",
                                 recipient.address, received=received),
                     "abuse@" + settings.BOUNCE_DOMAIN)
    assert intake.process_one(report.pk) == "complaint"
    [event] = Event.objects.filter(type="complaint")
    assert (event.recipient_id, event.data["via"]) == (recipient.pk, "queue-id")
    assert list(Suppression.objects.values_list("address", flat=True)) == [recipient.address]


def test_a_report_naming_no_message_of_ours_is_logged_not_recorded(alice, caplog):
    report = arrived(samples.arf("fbl@" + settings.BOUNCE_DOMAIN, "someone@else.test",
                                 "user@remote.test"), "fbl@" + settings.BOUNCE_DOMAIN)
    assert intake.process_one(report.pk) == "unlinked"
    assert not Event.objects.exists() and not Suppression.objects.exists()
    assert f"{report.queue_id}: intake read as unlinked" in caplog.text


def test_an_auto_reply_is_a_response_with_its_subject(alice):
    message, recipient, verp = sent(alice)
    reply = arrived(samples.auto_reply(verp, recipient.address), verp)
    assert intake.process_one(reply.pk) == "response"
    [event] = Event.objects.filter(type="response")
    assert (event.recipient_id, event.data["subject"], event.data["from"]) == (
        recipient.pk, "Out of office: hello", recipient.address)
    recipient.refresh_from_db()
    assert recipient.state == "delivered" and not Suppression.objects.exists()


def test_unreadable_mail_is_marked_read_with_its_outcome(alice):
    _, _, verp = sent(alice)
    junk = arrived(b"Subject: hi\r\n\r\nplease unsubscribe me\r\n", verp)
    assert intake.process_one(junk.pk) == "unknown"
    junk.refresh_from_db()
    assert junk.intake_outcome == "unknown" and not Event.objects.exists()


def test_a_verp_address_of_a_deleted_message_links_nothing(alice):
    message, recipient, verp = sent(alice)
    raw = samples.dsn(verp, recipient.address)
    message.delete()
    bounce = arrived(raw, verp)
    assert intake.process_one(bounce.pk) == "unlinked"
    assert not Event.objects.exists()


def test_references_skip_the_intake_messages_own_received_header():
    own = "0123456789ABCDEF0"
    raw = (f"Received: from x ([1.2.3.4])\r\n\tby relay.test (smtpeter) with ESMTP id {own};"
           "\r\n\r\nhi\r\n").encode()
    refs = intake.references(raw, parse_report(raw), [], own, key_for("verp"),
                             settings.BOUNCE_DOMAIN)
    assert refs.queue_ids == [] and refs.verp == []


def test_decide_without_a_link_records_nothing():
    report = parse_report(samples.dsn("b@x", "user@remote.test"))
    decision = intake.decide(report, False, "", "Q1")
    assert (decision.outcome, decision.event_type, decision.bounce_class) == ("unlinked", "", "")


def test_the_message_page_shows_the_bounce_and_its_owner_may_read_the_raw_report(alice, bob,
                                                                                  client):
    message, recipient, verp = sent(alice)
    raw = samples.dsn(verp, recipient.address)
    bounce = arrived(raw, verp)
    intake.process_one(bounce.pk)
    client.force_login(alice)
    page = client.get(f"/messages/{message.queue_id}/").content.decode()
    assert "Bounced" in page and "invalid_recipient" in page
    assert f'href="/messages/{bounce.queue_id}/raw/"' in page
    assert 'data-state="bounced">1 bounced' in page and "then a bounce came back" in page
    listing = client.get("/messages/").content.decode()
    assert 'data-state="bounced">1 bounced' in listing
    response = client.get(f"/messages/{bounce.queue_id}/raw/")
    assert response.status_code == 200 and response.content == raw
    # Not its page, not another customer's report.
    assert client.get(f"/messages/{bounce.queue_id}/").status_code == 404
    client.force_login(bob)
    assert client.get(f"/messages/{bounce.queue_id}/raw/").status_code == 404
    client.logout()
    assert client.get(f"/messages/{bounce.queue_id}/raw/").status_code in (302, 404)


def test_the_bounces_page_lists_the_owners_bounces_and_complaints_filtered(alice, bob, client):
    message, recipient, verp = sent(alice, "gone@remote.test")
    intake.process_one(arrived(samples.dsn(verp, recipient.address), verp).pk)
    _, full, verp2 = sent(alice, "full@remote.test")
    intake.process_one(arrived(samples.dsn(verp2, full.address, "4.2.2", "552 4.2.2 Mailbox full"),
                               verp2).pk)
    _, annoyed, verp3 = sent(alice, "annoyed@remote.test")
    fbl = "fbl@" + settings.BOUNCE_DOMAIN
    intake.process_one(arrived(samples.arf(fbl, verp3, annoyed.address), fbl).pk)
    client.force_login(alice)
    page = client.get("/bounces/").content.decode()
    assert page.count('class="bounce-row"') == 3
    assert "invalid_recipient" in page and "mailbox_full" in page and "raw report" in page
    hard = client.get("/bounces/?bounce_class=hard").content.decode()
    assert hard.count('class="bounce-row"') == 1 and "gone@remote.test" in hard
    reason = client.get("/bounces/?reason=mailbox_full").content.decode()
    assert reason.count('class="bounce-row"') == 1 and "full@remote.test" in reason
    complaints = client.get("/bounces/?kind=complaint").content.decode()
    assert complaints.count('class="bounce-row"') == 1 and "annoyed@remote.test" in complaints
    assert client.get("/bounces/?login=nobody").content.decode().count('class="bounce-row"') == 0
    assert client.get("/bounces/?bounce_class=bogus").status_code == 400
    client.force_login(bob)
    assert client.get("/bounces/").content.decode().count('class="bounce-row"') == 0


def test_the_logins_page_counts_sent_delivered_bounced_and_complaints_per_login(alice, client):
    from credentials import services as logins

    login, _ = logins.create_login(alice)
    other, _ = logins.create_login(alice)
    rows = {}
    for address, state in (("a@remote.test", "delivered"), ("b@remote.test", "delivered"),
                           ("c@remote.test", "delivered"), ("d@remote.test", "deferred")):
        message, recipient, verp = sent(alice, address, state=state)
        Message.objects.filter(pk=message.pk).update(login=login)
        rows[address] = (recipient, verp)
    r, verp = rows["a@remote.test"]
    intake.process_one(arrived(samples.dsn(verp, r.address), verp).pk)
    r, verp = rows["b@remote.test"]
    intake.process_one(arrived(samples.dsn(verp, r.address, "4.2.2", "552 4.2.2 Mailbox full"),
                               verp).pk)
    r, verp = rows["c@remote.test"]
    fbl = "fbl@" + settings.BOUNCE_DOMAIN
    intake.process_one(arrived(samples.arf(fbl, verp, r.address), fbl).pk)
    client.force_login(alice)
    page = client.get("/").content.decode()
    mine = page[page.index(f'id="login-{login.pk}"'):page.index(f'id="login-{other.pk}"')] \
        if page.index(f'id="login-{login.pk}"') < page.index(f'id="login-{other.pk}"') \
        else page[page.index(f'id="login-{login.pk}"'):]
    for text in ("4 sent", "3 delivered", "1 hard", "1 soft", "1 complaint<"):
        assert text in mine, text
    theirs = page[page.index(f'id="login-{other.pk}"'):]
    assert "0 sent" in theirs


def test_a_crash_before_the_commit_leaves_nothing_and_the_rerun_records_once(alice,
                                                                              monkeypatch):
    message, recipient, verp = sent(alice)
    bounce = arrived(samples.dsn(verp, recipient.address), verp)

    def crash(*args, **kwargs):
        raise RuntimeError("process killed")

    with monkeypatch.context() as m:  # the last step of the transaction fails
        m.setattr(intake.suppression, "record_bounce", crash)
        with pytest.raises(RuntimeError):
            intake.process_one(bounce.pk)
    assert not Event.objects.exists() and intake.pending() == [bounce.pk]
    recipient.refresh_from_db()
    assert recipient.state == "delivered"
    assert intake.process_one(bounce.pk) == "bounce"
    assert Event.objects.filter(type="bounce").count() == 1
    assert Suppression.objects.filter(owner=alice).count() == 1


# -- trust: who may make a report act (docs/bounces.md, "Which reports are believed") --------


def _received_by(message) -> str:
    return (f"Received: from app ([127.0.0.1])\n\tby relay.test (smtpeter) with ESMTPSA "
            f"id {message.queue_id};\n\tSun, 29 Nov 2026 09:54:00 +0000\n")


def test_a_complaint_naming_only_our_queue_id_suppresses_nothing_and_records_nothing(alice,
                                                                                     caplog):
    # Anyone who saw one copy of a message knows its queue id; naming no recipient (or a
    # stranger) they must not be able to complain in a recipient's name.
    message, recipient, _ = sent(alice)
    fbl = "abuse@" + settings.BOUNCE_DOMAIN
    for named in ("", "stranger@else.test"):
        report = arrived(samples.arf(fbl, "app@example.com", named,
                                     received=_received_by(message)), fbl)
        assert intake.process_one(report.pk) == "untrusted"
        report.refresh_from_db()
        assert (report.intake_outcome, report.intake_for_id) == ("untrusted", None)
        assert f"{report.queue_id}: intake read as untrusted: complaint about " \
               f"{message.queue_id} ignored" in caplog.text
    assert not Event.objects.exists() and not Suppression.objects.exists()


def test_a_complaint_through_our_queue_id_for_a_recipient_not_delivered_is_ignored(alice):
    message, recipient, _ = sent(alice, state=Recipient.State.DEFERRED)
    fbl = "abuse@" + settings.BOUNCE_DOMAIN
    report = arrived(samples.arf(fbl, "app@example.com", recipient.address,
                                 received=_received_by(message)), fbl)
    assert intake.process_one(report.pk) == "untrusted"
    assert not Event.objects.exists() and not Suppression.objects.exists()
    # The owner cannot read an untrusted report: it is linked to nothing.
    assert intake.process_one(report.pk) is None


def test_a_forged_verp_return_path_links_nothing(alice):
    message, recipient, verp = sent(alice)
    # Right message and recipient ids, signed with a key that is not ours.
    forged = verp_address(b"not our key" * 3, message.pk, recipient.pk, settings.BOUNCE_DOMAIN)
    assert forged != verp
    fbl = "fbl@" + settings.BOUNCE_DOMAIN
    report = arrived(samples.arf(fbl, forged, recipient.address), fbl)
    assert intake.process_one(report.pk) == "unlinked"
    assert not Event.objects.exists() and not Suppression.objects.exists()


def test_a_bounce_through_our_queue_id_needs_a_named_recipient_who_received_it(alice):
    message, recipient, _ = sent(alice, others=["other@remote.test"])
    to = "postmaster@" + settings.BOUNCE_DOMAIN
    raw = samples.dsn("app@example.com", recipient.address).replace(
        b"Return-Path: <app@example.com>\r\n", _received_by(message).replace(
            "\n", "\r\n").encode())
    assert intake.process_one(arrived(raw, to).pk) == "bounce"
    [event] = Event.objects.filter(type="bounce")
    assert (event.recipient_id, event.data["via"]) == (recipient.pk, "queue-id")
    forged = raw.replace(recipient.address.encode(), b"victim@remote.test")
    assert intake.process_one(arrived(forged, to).pk) == "untrusted"
    assert Event.objects.count() == 1
    assert list(Suppression.objects.values_list("address", flat=True)) == [recipient.address]


# -- several intake messages per transaction ------------------------------------------------


def _three(alice):
    made = []
    for address in ("one@remote.test", "two@remote.test", "three@remote.test"):
        _, recipient, verp = sent(alice, address)
        made.append((recipient, arrived(samples.dsn(verp, address), verp)))
    return made


def test_a_batch_reads_several_in_one_transaction_and_a_poisonous_one_blocks_none(
        alice, monkeypatch, caplog):
    made = _three(alice)
    real = intake.suppression.record_bounce

    def poison(owner_id, address, *args, **kwargs):
        if address == "two@remote.test":
            raise ValueError("a report that breaks the reader")
        return real(owner_id, address, *args, **kwargs)

    monkeypatch.setattr(intake.suppression, "record_bounce", poison)
    ids = [bounce.pk for _, bounce in made]
    assert intake.process_batch(ids) == dict(zip(ids, ["bounce", "error", "bounce"],
                                                 strict=True))
    # The poisonous one's event was rolled back with its savepoint; the others' stand.
    assert sorted(Event.objects.values_list("recipient__address", flat=True)) == [
        "one@remote.test", "three@remote.test"]
    assert sorted(Suppression.objects.values_list("address", flat=True)) == [
        "one@remote.test", "three@remote.test"]
    made[1][0].refresh_from_db()
    assert made[1][0].state == "delivered"
    assert f"{made[1][1].queue_id}: intake message could not be read (ValueError" in caplog.text
    assert intake.pending() == [] and intake.process_batch(ids) == {}
    assert Event.objects.count() == 2


def test_a_database_error_on_one_message_leaves_it_for_a_read_of_its_own(alice, monkeypatch,
                                                                         caplog):
    from django.db import IntegrityError

    made = _three(alice)
    real, calls = intake.record, []

    def refused_once(type, message, recipient, data):
        calls.append(recipient)
        if len(calls) == 1:
            raise IntegrityError("the database refused it this time")
        return real(type, message, recipient, data)

    monkeypatch.setattr(intake, "record", refused_once)
    ids = [bounce.pk for _, bounce in made]
    assert intake.process_batch(ids) == dict.fromkeys(ids, "bounce")
    assert "intake left for a read of its own (IntegrityError" in caplog.text
    assert Event.objects.filter(type="bounce").count() == 3


def test_a_crash_inside_a_batch_commits_nothing_and_the_rerun_records_each_once(alice,
                                                                                monkeypatch):
    made = _three(alice)
    real = intake.suppression.record_bounce

    def killed(owner_id, address, *args, **kwargs):
        if address == "three@remote.test":
            raise KeyboardInterrupt  # like the process dying: no except clause takes it
        return real(owner_id, address, *args, **kwargs)

    ids = [bounce.pk for _, bounce in made]
    with monkeypatch.context() as m:
        m.setattr(intake.suppression, "record_bounce", killed)
        with pytest.raises(KeyboardInterrupt):
            intake.process_batch(ids)
    assert not Event.objects.exists() and not Suppression.objects.exists()
    assert intake.pending() == ids
    assert intake.process_batch(ids) == dict.fromkeys(ids, "bounce")
    assert intake.process_batch(ids) == {}
    assert Event.objects.filter(type="bounce").count() == 3
    assert Suppression.objects.count() == 3


@pytest.mark.parametrize("kind", ["bounce", "complaint", "response"])
def test_the_raw_report_of_each_event_is_one_click_from_the_owners_pages(kind, alice, bob,
                                                                         staff, client):
    message, recipient, verp = sent(alice)
    fbl = "fbl@" + settings.BOUNCE_DOMAIN
    raw, to = {"bounce": (samples.dsn(verp, recipient.address), verp),
               "complaint": (samples.arf(fbl, verp, recipient.address), fbl),
               "response": (samples.auto_reply(verp, recipient.address), verp)}[kind]
    report = arrived(raw, to)
    assert intake.process_one(report.pk) == kind
    link = f'href="/messages/{report.queue_id}/raw/"'
    client.force_login(alice)
    assert link in client.get(f"/messages/{message.queue_id}/").content.decode()
    if kind != "response":  # the Bounces page lists bounces and complaints
        assert link in client.get("/bounces/").content.decode()
    got = client.get(f"/messages/{report.queue_id}/raw/")
    assert (got.status_code, got.content, got["Content-Type"]) == (200, raw, "message/rfc822")
    client.force_login(bob)  # another customer: as if it did not exist
    assert client.get(f"/messages/{report.queue_id}/raw/").status_code == 404
    assert client.get(f"/messages/{message.queue_id}/").status_code == 404
    client.force_login(staff)
    assert client.get(f"/messages/{report.queue_id}/raw/").content == raw


def test_a_message_longer_than_the_parser_reads_is_read_from_its_first_mib(alice):
    from relay.reports import MAX_BYTES

    message, recipient, verp = sent(alice)
    raw = samples.dsn(verp, recipient.address) + b"x" * (MAX_BYTES + 4096) + b"\r\n"
    bounce = arrived(raw, verp)
    [prepared] = intake.prepare([bounce.pk])
    assert prepared.report.type == "bounce"
    assert [r.address for r in prepared.report.recipients] == [recipient.address]
    assert intake.process_batch([bounce.pk]) == {bounce.pk: "bounce"}
