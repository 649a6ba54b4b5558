from django.db import migrations, models
from django.db.models.functions import Substr

from relay.headers import MAX_HEAD, subject_of

BATCH = 500


def fill_subjects(apps, schema_editor):
    # Messages stored before the column existed get their subject from their header block
    # (the first MAX_HEAD bytes only: a stored message may be megabytes).
    Message = apps.get_model("relay", "Message")
    head = Substr("raw", 1, MAX_HEAD, output_field=models.BinaryField())
    last = 0
    while True:
        rows = list(Message.objects.filter(pk__gt=last).order_by("pk")
                    .annotate(head=head).values_list("pk", "head")[:BATCH])
        if not rows:
            return
        last = rows[-1][0]
        changed = [Message(pk=pk, subject=subject) for pk, data in rows
                   if (subject := subject_of(bytes(data or b"")))]
        Message.objects.bulk_update(changed, ["subject"])


class Migration(migrations.Migration):

    dependencies = [
        ('relay', '0004_delivery'),
    ]

    operations = [
        migrations.AddField(
            model_name='message',
            name='subject',
            field=models.CharField(blank=True, db_default='', max_length=998),
        ),
        migrations.RunPython(fill_subjects, migrations.RunPython.noop, elidable=True),
    ]
