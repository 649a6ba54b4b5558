"""Print a message (read from stdin) as a login would deliver it; envelope sender on stderr."""
import sys

from django.core.management.base import BaseCommand, CommandError

from credentials.services import login_by_username
from features.overrides import apply_overrides
from features.services import context, prepare_message


class Command(BaseCommand):
    help = "Render a message from stdin with a login's features, for one recipient."

    def add_arguments(self, parser):
        parser.add_argument("--login", required=True, help="SMTP login username")
        parser.add_argument("--rcpt", default="recipient@example.com", help="recipient address")
        parser.add_argument("--mail-from", default="sender@example.com",
                            help="original envelope sender ('' for the null sender)")

    def handle(self, *args, login: str, rcpt: str, mail_from: str, **opts):
        account = login_by_username(login)
        if account is None:
            raise CommandError(f"no login named {login!r}")
        raw = sys.stdin.buffer.read()
        features, _ = apply_overrides(account.featureset(), raw)
        rendered = prepare_message(raw, features).for_recipient(context(0, 0, mail_from, rcpt))
        out = getattr(self.stdout, "_out", sys.stdout)
        out = getattr(out, "buffer", None) or sys.stdout.buffer
        out.write(rendered.message)
        out.flush()
        self.stderr.write(f"envelope sender: <{rendered.envelope_sender}>")
        for warning in rendered.warnings:
            self.stderr.write(f"warning: {warning}")
