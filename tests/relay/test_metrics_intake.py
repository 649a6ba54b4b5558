"""The bounced and complained counters (smtpeter_intake_events_total): a bounce and an ARF
complaint read by the intake count once each, a re-read and a delayed notice not at all."""
import pytest
from django.conf import settings

from relay import intake
from relay.metrics import INTAKE

from . import intake_samples as samples
from .test_intake import arrived, sent

pytestmark = pytest.mark.django_db(transaction=True)  # the counter moves on commit


def counted(kind: str) -> float:
    # The counter alone: REGISTRY would also run the queue collector, made for its own thread.
    return next((s.value for family in INTAKE.collect() for s in family.samples
                 if s.name.endswith("_total") and s.labels == {"type": kind}), 0.0)


def test_bounces_and_complaints_are_counted_once(alice):
    before = {k: counted(k) for k in ("bounce", "complaint")}
    message, recipient, verp = sent(alice)
    bounce = arrived(samples.dsn(verp, recipient.address), verp)
    assert intake.process_one(bounce.pk) == "bounce"
    assert intake.process_one(bounce.pk) is None  # read already: not counted again
    notice = arrived(samples.dsn(verp, recipient.address, "4.4.1", "Connection timed out",
                                 action="delayed"), verp)
    assert intake.process_one(notice.pk) == "delayed"
    _, other, other_verp = sent(alice, address="other@remote.test")
    report = arrived(samples.arf(f"fbl@{settings.BOUNCE_DOMAIN}", other_verp, other.address),
                     f"fbl@{settings.BOUNCE_DOMAIN}")
    assert intake.process_one(report.pk) == "complaint"
    assert counted("bounce") - before["bounce"] == 1
    assert counted("complaint") - before["complaint"] == 1
