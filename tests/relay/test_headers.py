"""relay.headers.subject_of, the queue writer storing it with each message, and the migration
that fills it in for messages stored before."""
import importlib

import pytest
from django.apps import apps

from relay.headers import MAX_HEAD, MAX_SUBJECT, subject_of
from relay.models import Message
from relay.queue_writer import Submission, write_batch


@pytest.mark.parametrize(("raw", "subject"), [
    (b"Subject: hello\r\n\r\nbody", "hello"),
    (b"Received: from x\r\nSUBJECT:hello again \r\nTo: b\r\n\r\n", "hello again"),
    # folded, encoded words in two charsets, the space between encoded words dropped
    (b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= and\r\n =?iso-8859-1?b?5Q==?= =?utf-8?q?_x?=\r\n\r\n",
     "Grüße and å x"),
    (b"Subject: caf\xc3\xa9 in UTF-8\n\nbare LF", "café in UTF-8"),  # RFC 6532
    (b"Subject: =?x-unknown?q?abc?=\r\n\r\n", "=?x-unknown?q?abc?="),  # kept as written
    (b"Subject: =?utf-8?b?!!!?=\r\n\r\n", "=?utf-8?b?!!!?="),
    (b"Subject: a\x00b\x1bc\r\n\r\n", "a b c"),  # no control characters
    (b"From: a\r\n\r\nSubject: in the body\r\n", ""),  # only the header block counts
    (b"X-Subject: no\r\nTo: b\r\n\r\n", ""),
    (b"", ""),
    (b"Subject: " + b"x" * 5000 + b"\r\n\r\n", "x" * MAX_SUBJECT),
])
def test_subject_of(raw, subject):
    assert subject_of(raw) == subject


def test_a_subject_past_the_first_64_kib_of_header_is_not_looked_for():
    raw = b"X-Long: " + b"y" * MAX_HEAD + b"\r\nSubject: late\r\n\r\n"
    assert subject_of(raw) == ""
    assert subject_of(b"X-Long: " + b"y" * 1000 + b"\r\nSubject: soon\r\n\r\n") == "soon"


@pytest.mark.django_db
def test_the_queue_writer_stores_the_decoded_subject():
    raw = b"Received: by us\r\nSubject: =?utf-8?q?=E2=9C=93_paid?=\r\n\r\nthanks\r\n"
    [message_id] = write_batch([Submission(
        queue_id="QSUBJECT1", kind="submission", login_id=None, owner_id=None,
        mail_from="a@example.com", ret="", envid="", body="", client_ip=None, helo="h",
        tls_version="", raw=raw, recipients=[("b@example.org", "", "")])], set())
    assert Message.objects.get(pk=message_id).subject == "✓ paid"


@pytest.mark.django_db
def test_the_migration_fills_in_the_subjects_of_older_messages():
    older = [Message.objects.create(raw=b"Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\nx"),
             Message.objects.create(raw=b"To: nobody\r\n\r\nx"),
             Message.objects.create(raw=b"X-Big: " + b"z" * 100_000 + b"\r\n\r\nSubject: no")]
    Message.objects.update(subject="")
    migration = importlib.import_module("relay.migrations.0005_message_subject")
    migration.BATCH = 2  # several batches
    migration.fill_subjects(apps, None)
    assert [Message.objects.get(pk=m.pk).subject for m in older] == ["café", "", ""]
