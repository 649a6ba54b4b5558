"""`manage.py dkimrelaykey`: make the relay's own DKIM key if there is none (DSNs and mail from
unverified domains are signed with it) and print the TXT record to publish for it."""
from django.conf import settings
from django.core.management.base import BaseCommand

from senders import services


class Command(BaseCommand):
    help = "Make the relay's DKIM key (DKIM_RELAY_KEY_FILE) if missing; print its DNS record."

    def handle(self, *args, **options):
        if services.ensure_relay_key():
            self.stdout.write(f"Wrote {settings.DKIM_RELAY_KEY_FILE}")
        name, value = services.relay_record()
        self.stdout.write(f'{name}. IN TXT "{value}"')
