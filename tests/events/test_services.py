"""events.services: the one writer of events."""
import pytest

from events import services
from events.models import Event
from relay.models import Message, Recipient

pytestmark = pytest.mark.django_db


@pytest.fixture
def recipient():
    message = Message.objects.create(mail_from="app@example.com", raw=b"Subject: x\r\n\r\ny\r\n")
    return Recipient.objects.create(message=message, address="bob@example.org")


def test_record_takes_objects_or_ids(recipient):
    one = services.record("delivery", recipient.message, recipient, {"code": 250})
    two = services.record(Event.Type.FAILURE, recipient.message_id, recipient.pk, flags=["x"])
    assert [(e.type, e.message_id, e.recipient_id, e.data, e.flags)
            for e in Event.objects.order_by("id")] == [
        ("delivery", recipient.message_id, recipient.pk, {"code": 250}, []),
        ("failure", recipient.message_id, recipient.pk, {}, ["x"]),
    ]
    assert one.pk and two.pk


def test_record_many_is_one_batch_and_refuses_unknown_types(recipient):
    made = services.record_many([
        services.NewEvent("deferral", recipient.message_id, recipient.pk, {"text": "a\x00b"}),
        services.NewEvent("warning", recipient.message_id, None, {"reason": ["x\x00"]}),
    ])
    assert [e.pk for e in made] == list(Event.objects.order_by("id").values_list("pk", flat=True))
    # NUL is dropped: PostgreSQL's jsonb refuses it.
    assert [e.data for e in Event.objects.order_by("id")] == [{"text": "ab"}, {"reason": ["x"]}]
    with pytest.raises(ValueError, match="unknown event type 'sent'"):
        services.record_many([services.NewEvent("delivery"), services.NewEvent("sent")])
    assert Event.objects.count() == 2  # nothing of a refused batch is stored
    assert services.record_many([]) == []


def test_record_fast_writes_what_record_writes_and_runs_the_same_hook(recipient, monkeypatch):
    hooked = []
    monkeypatch.setattr(services, "_after_record",
                        lambda ids, events: hooked.append((ids, events)))
    from django.utils import timezone

    now = timezone.now()
    pk = services.record_fast("click", recipient.message_id, recipient.pk,
                              {"url": "https://example.com/", "ua": "a\x00b"}, ["fast"], now,
                              durable=False)
    event = Event.objects.get()
    assert (event.pk, event.type, event.message_id, event.recipient_id, event.data,
            event.flags, event.time) == (pk, "click", recipient.message_id, recipient.pk,
                                         {"url": "https://example.com/", "ua": "ab"},
                                         ["fast"], now)
    assert hooked == [([pk], [services.NewEvent("click", recipient.message_id, recipient.pk,
                                                event.data, ["fast"])])]
    services.record("open", recipient.message_id, recipient.pk)
    assert [ids for ids, _ in hooked] == [[pk], [pk + 1]]
    with pytest.raises(ValueError, match="unknown event type 'clicked'"):
        services.record_fast("clicked", recipient.message_id, recipient.pk, {}, [], now)
    assert Event.objects.count() == 2
