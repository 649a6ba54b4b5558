"""`manage.py checksenders`: the periodic re-check of sender domains' DNS records (run it from
cron, e.g. hourly); a verified domain whose DKIM record went missing or wrong stops signing."""
from datetime import timedelta

from django.core.management.base import BaseCommand

from senders import services


class Command(BaseCommand):
    help = ("Check the DNS records of every sender domain not checked for "
            "SENDER_RECHECK_INTERVAL seconds (or --all).")

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="check every domain now")

    def handle(self, *args, all: bool, **options):
        counts = services.recheck(timedelta(0) if all else None)
        self.stdout.write("checked {checked} domain(s): {verified} verified, "
                          "{lapsed} stopped verifying".format(**counts))
