"""`manage.py maketlscert`: a self-signed development certificate at TLS_CERT_FILE/TLS_KEY_FILE."""
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from relay.tls import write_self_signed


class Command(BaseCommand):
    help = "Write a self-signed certificate and key for the SMTP listeners (development only)."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="replace an existing certificate")
        parser.add_argument(
            "--hostname", action="append", dest="hostnames",
            help="name or IP in the certificate (repeatable; default SMTP_HOSTNAME, localhost, "
            "127.0.0.1)",
        )
        parser.add_argument("--cert", default=settings.TLS_CERT_FILE)
        parser.add_argument("--key", default=settings.TLS_KEY_FILE)

    def handle(self, *args, force, hostnames, cert, key, **options):
        if Path(cert).exists() and Path(key).exists() and not force:
            self.stdout.write(f"{cert} exists; not replacing it (use --force).")
            return
        names = hostnames or list(dict.fromkeys([settings.SMTP_HOSTNAME, "localhost", "127.0.0.1"]))
        write_self_signed(cert, key, names)
        self.stdout.write(self.style.SUCCESS(f"Wrote {cert} and {key} for {', '.join(names)}"))
