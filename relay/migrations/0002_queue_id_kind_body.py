from django.db import migrations, models


def fill_queue_ids(apps, schema_editor):
    Message = apps.get_model("relay", "Message")
    for message in Message.objects.filter(queue_id="").only("pk"):
        message.queue_id = f"OLD{message.pk:012d}"
        message.save(update_fields=["queue_id"])


class Migration(migrations.Migration):

    dependencies = [
        ("relay", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="queue_id",
            field=models.CharField(default="", max_length=20),
            preserve_default=False,
        ),
        migrations.RunPython(fill_queue_ids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="message",
            name="queue_id",
            field=models.CharField(max_length=20, unique=True),
        ),
        migrations.AddField(
            model_name="message",
            name="kind",
            field=models.CharField(
                choices=[
                    ("submission", "authenticated submission"),
                    ("bounce", "unauthenticated mail to BOUNCE_DOMAIN (bounce/feedback intake)"),
                ],
                default="submission",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="message",
            name="body",
            field=models.CharField(blank=True, max_length=10),
        ),
        migrations.AlterField(
            model_name="message",
            name="envid",
            field=models.CharField(blank=True, max_length=100),
        ),
    ]
