"""relay.suppression against the database: per-owner entries, reasons and expiry, the soft
bounce threshold, what delivery asks, the audit of changes by people, and the CSV round trip."""
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from events.models import Event
from events.services import record
from relay import suppression
from relay.models import Message, Recipient, SoftBounce, Suppression, SuppressionAudit

pytestmark = pytest.mark.django_db
R = Suppression.Reason


def test_addresses_are_kept_lower_cased_one_entry_per_owner(alice, bob):
    suppression.add(alice.pk, " <Carol@Example.ORG> ", R.MANUAL, actor=alice)
    suppression.add(alice.pk, "carol@example.org", R.MANUAL, actor=alice)
    suppression.add(bob.pk, "CAROL@example.org", R.MANUAL, actor=bob)
    assert sorted(Suppression.objects.values_list("owner__username", "address")) == [
        ("alice", "carol@example.org"), ("bob", "carol@example.org")]
    assert set(suppression.is_suppressed(alice.pk, ["CAROL@EXAMPLE.ORG", "dave@example.org",
                                                    "not an address"])) == {"carol@example.org"}


@pytest.mark.parametrize("bad", ["", "carol", "@example.org", "carol@", "ca rol@example.org",
                                 "a@b\x00c", "x" * 320 + "@example.org", "a,b@example.org"])
def test_bad_addresses_are_refused(alice, bad):
    with pytest.raises(ValueError):
        suppression.add(alice.pk, bad, R.MANUAL, actor=alice)
    assert not Suppression.objects.exists()


def test_unknown_reasons_are_refused(alice):
    with pytest.raises(ValueError, match="unknown reason"):
        suppression.add(alice.pk, "carol@example.org", "bored", actor=alice)


def test_expiry_follows_the_reason(alice, settings):
    settings.SUPPRESSION_HARD_BOUNCE_DAYS = 10
    now = timezone.now()
    hard = suppression.record_bounce(alice.pk, "h@example.org", "hard", now=now)
    complaint = suppression.record_complaint(alice.pk, "c@example.org", now=now)
    manual = suppression.add(alice.pk, "m@example.org", R.MANUAL, actor=alice, now=now)
    assert hard.expires_at == now + timedelta(days=10)
    assert complaint.expires_at is None and manual.expires_at is None
    later = now + timedelta(days=11)
    assert set(suppression.is_suppressed(
        alice.pk, ["h@example.org", "c@example.org", "m@example.org"], now=later)) == {
        "c@example.org", "m@example.org"}
    settings.SUPPRESSION_HARD_BOUNCE_DAYS = 0  # never
    assert suppression.record_bounce(alice.pk, "h2@example.org", "hard").expires_at is None


def test_a_complaint_is_not_shortened_by_a_later_hard_bounce(alice):
    suppression.record_complaint(alice.pk, "c@example.org", detail="abuse")
    entry = suppression.record_bounce(alice.pk, "c@example.org", "hard", detail="5.1.1")
    assert (entry.reason, entry.detail, entry.expires_at) == (R.COMPLAINT, "abuse", None)
    # An expired entry gives way to any new one.
    Suppression.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    entry = suppression.record_bounce(alice.pk, "c@example.org", "hard", detail="5.1.1")
    assert entry.reason == R.HARD_BOUNCE and entry.expires_at > timezone.now()


def test_soft_bounces_suppress_at_the_threshold_within_the_window(alice, settings):
    settings.SUPPRESSION_SOFT_BOUNCES = 3
    settings.SUPPRESSION_SOFT_WINDOW_DAYS = 7
    settings.SUPPRESSION_SOFT_BOUNCE_DAYS = 30
    start = timezone.now() - timedelta(days=20)
    # Two long ago, then two inside the window: not yet.
    for days in (0, 1, 12, 13):
        assert suppression.record_bounce(alice.pk, "s@example.org", "soft",
                                         now=start + timedelta(days=days)) is None
    assert SoftBounce.objects.count() == 2  # the old ones were let go
    now = start + timedelta(days=14)
    entry = suppression.record_bounce(alice.pk, "S@example.org", "soft", detail="mailbox full",
                                      now=now)
    assert entry.reason == R.SOFT_BOUNCES
    assert entry.detail == "3 soft bounces in 7 days; last: mailbox full"
    assert entry.expires_at == now + timedelta(days=30)


def test_a_soft_bounce_counted_twice_counts_once(alice, settings):
    settings.SUPPRESSION_SOFT_BOUNCES = 2
    message = Message.objects.create(owner=alice, raw=b"x")
    rcpt = Recipient.objects.create(message=message, address="s@example.org")
    event = record(Event.Type.BOUNCE, message.pk, rcpt.pk, {"class": "soft"})
    for _ in range(3):  # intake re-run after a crash
        assert suppression.record_soft_bounce(alice.pk, "s@example.org",
                                              event_id=event.pk) is None
    entry = suppression.record_soft_bounce(alice.pk, "s@example.org")
    assert entry is not None


def test_the_event_that_caused_an_entry_is_kept_and_may_go(alice):
    message = Message.objects.create(owner=alice, raw=b"x")
    rcpt = Recipient.objects.create(message=message, address="h@example.org")
    event = record(Event.Type.BOUNCE, message.pk, rcpt.pk, {"class": "hard"})
    entry = suppression.record_bounce(alice.pk, "h@example.org", "hard", event_id=event.pk)
    assert entry.event_id == event.pk
    message.delete()  # retention: the entry outlives its event
    entry.refresh_from_db()
    assert entry.event_id is None and entry.reason == R.HARD_BOUNCE


def test_delivery_asks_per_message_and_never_for_dsns(alice, bob):
    suppression.add(alice.pk, "carol@example.org", R.COMPLAINT, actor=alice)
    mine = Message.objects.create(owner=alice, raw=b"x")
    theirs = Message.objects.create(owner=bob, raw=b"x")
    dsn = Message.objects.create(owner=alice, raw=b"x", dsn_of=mine)
    ownerless = Message.objects.create(raw=b"x")
    addresses = ["Carol@example.org", "dave@example.org"]
    assert suppression.for_message(mine.pk, addresses) == {"carol@example.org": "complaint"}
    assert suppression.for_message(theirs.pk, addresses) == {}
    assert suppression.for_message(dsn.pk, addresses) == {}
    assert suppression.for_message(ownerless.pk, addresses) == {}


def test_delivery_asks_once_per_claim_batch_across_owners(alice, bob):
    suppression.add(alice.pk, "carol@example.org", R.COMPLAINT, actor=alice)
    suppression.add(bob.pk, "dave@example.org", R.MANUAL, actor=bob)
    suppression.add(bob.pk, "old@example.org", R.MANUAL, actor=bob,
                    expires_at=timezone.now() - timedelta(days=1))
    asked = {alice.pk: ["Carol@example.org ", "dave@example.org"],
             bob.pk: ["carol@example.org", "DAVE@example.org", "old@example.org"]}
    assert suppression.for_owners(asked) == {(alice.pk, "carol@example.org"): "complaint",
                                             (bob.pk, "dave@example.org"): "manual"}
    assert suppression.for_owners({}) == {}


def test_changes_by_people_are_audited_intake_adds_are_not(alice, staff):
    suppression.record_bounce(alice.pk, "h@example.org", "hard")
    assert not SuppressionAudit.objects.exists()
    suppression.add(alice.pk, "m@example.org", R.MANUAL, detail="asked", actor=staff,
                    source=Suppression.Source.DASHBOARD, ip="192.0.2.1")
    assert suppression.remove(alice.pk, "H@example.org", actor=alice)
    assert not suppression.remove(alice.pk, "nobody@example.org", actor=alice)
    got = [(a.action, a.actor_name, a.owner_name, a.address, a.reason)
           for a in SuppressionAudit.objects.order_by("id")]
    assert got == [("added", "auditor", "alice", "m@example.org", "manual"),
                   ("removed", "alice", "alice", "h@example.org", "hard_bounce")]
    added = SuppressionAudit.objects.get(action="added")
    assert added.ip == "192.0.2.1" and added.details["after"]["detail"] == "asked"
    with pytest.raises(ValueError):
        added.save()
    with pytest.raises(ValueError):
        added.delete()


def test_search_by_part_reason_state_and_customer(alice, bob):
    suppression.add(alice.pk, "carol@example.org", R.MANUAL, actor=alice)
    suppression.record_complaint(alice.pk, "dave@example.net")
    suppression.add(bob.pk, "carol@example.org", R.MANUAL, actor=bob)
    old = suppression.record_bounce(alice.pk, "old@example.org", "hard")
    Suppression.objects.filter(pk=old.pk).update(expires_at=timezone.now())

    def found(*args, **kw):
        return sorted((s.owner.username, s.address) for s in suppression.search(*args, **kw))

    assert found(alice.pk) == [("alice", "carol@example.org"), ("alice", "dave@example.net")]
    assert found(alice.pk, "EXAMPLE.NET") == [("alice", "dave@example.net")]
    assert found(alice.pk, reason="complaint") == [("alice", "dave@example.net")]
    assert found(alice.pk, state="expired") == [("alice", "old@example.org")]
    assert len(found(alice.pk, state="all")) == 3
    assert found(None, "carol") == [("alice", "carol@example.org"), ("bob", "carol@example.org")]
    assert found(None, customer="bob") == [("bob", "carol@example.org")]


def test_csv_export_imports_back_the_same_list(alice, bob):
    suppression.record_complaint(alice.pk, "c@example.org", detail="=HYPERLINK(\"x\")")
    suppression.record_bounce(alice.pk, "h@example.org", "hard", detail='550 "no, such"\nuser')
    suppression.add(alice.pk, "m@example.org", R.MANUAL, actor=alice)
    out = io.StringIO()
    suppression.export_csv(out, suppression.search(alice.pk))
    text = out.getvalue()
    assert text.splitlines()[0] == "address,reason,detail,created,expires_at,source"
    assert "'=HYPERLINK" in text  # a spreadsheet shows it, does not run it

    result = suppression.import_csv(bob.pk, text, actor=bob)
    assert (result.added, result.unchanged, result.errors) == (3, 0, [])

    def listed(owner):
        return sorted((s.address, s.reason, s.detail, s.expires_at)
                      for s in suppression.search(owner.pk))

    assert listed(bob) == listed(alice)
    assert {s.source for s in suppression.search(bob.pk)} == {"import"}
    assert SuppressionAudit.objects.filter(owner=bob, action="imported").count() == 3
    again = suppression.import_csv(bob.pk, text, actor=bob)
    assert (again.added, again.unchanged) == (0, 3)


def test_import_reads_plain_lists_and_reports_bad_rows(alice):
    result = suppression.import_csv(alice.pk, "\ufeffOne@example.org\nnot-an-address\n\n"
                                              "two@example.org,whatever\n", actor=alice)
    assert (result.added, result.error_count) == (2, 1)
    assert result.errors == ["line 2: not an email address: 'not-an-address'"]
    assert sorted(s.address for s in suppression.search(alice.pk)) == [
        "one@example.org", "two@example.org"]
    result = suppression.import_csv(
        alice.pk, "Address,Reason,expires_at\nx@example.org,bogus,\ny@example.org,,soon\n"
                  "z@example.org,complaint,\n", actor=alice)
    assert result.added == 1 and result.error_count == 2
    assert "unknown reason" in result.errors[0] and "ISO 8601" in result.errors[1]
