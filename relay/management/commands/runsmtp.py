"""`manage.py runsmtp`: the SMTP listeners and the delivery worker in one process."""
import asyncio
import logging
import resource
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from relay.server import ROLES, RelayServer, event_loop_factory, listener_specs


def _ports(text: str | None, default: list[int]) -> list[int]:
    if text is None:
        return default
    return [int(p) for p in text.split(",") if p.strip()]


class Command(BaseCommand):
    help = ("Run the SMTP listeners, submission (implicit TLS and STARTTLS) and mx (bounces), "
            "delivery, the intake (reads what comes back to BOUNCE_DOMAIN) and the webhooks "
            "sender.")

    def add_arguments(self, parser):
        parser.add_argument(
            "--roles", default=",".join(ROLES),
            help=f"comma-separated roles to run (default {','.join(ROLES)})",
        )
        parser.add_argument("--bind", help="address to bind (default SMTP_BIND)")
        parser.add_argument("--tls-ports", help="override SMTP_TLS_PORTS, e.g. 2465")
        parser.add_argument("--starttls-ports", help="override SMTP_STARTTLS_PORTS")
        parser.add_argument("--mx-ports", help="override SMTP_MX_PORTS")
        parser.add_argument(
            "--check", action="store_true",
            help="check a running runsmtp instead of starting one: the database, the "
                 "certificate, a 220 greeting on each listener of --roles; exit 1 on failure",
        )

    def handle(self, *args, **opts):
        roles = [r.strip() for r in opts["roles"].split(",") if r.strip()]
        unknown = set(roles) - set(ROLES)
        if unknown or not roles:
            raise CommandError(f"unknown role(s) {sorted(unknown)}; known: {', '.join(ROLES)}")
        try:
            specs = listener_specs(
                roles,
                _ports(opts["tls_ports"], settings.SMTP_TLS_PORTS),
                _ports(opts["starttls_ports"], settings.SMTP_STARTTLS_PORTS),
                _ports(opts["mx_ports"], settings.SMTP_MX_PORTS),
            )
        except ValueError as exc:
            raise CommandError(f"bad port list: {exc}") from None
        if not specs and not {"delivery", "intake", "webhooks"} & set(roles):
            raise CommandError("no listener configured")
        if opts["check"]:
            return self.check_running(opts["bind"] or settings.SMTP_BIND, specs)
        for path in (settings.TLS_CERT_FILE, settings.TLS_KEY_FILE):
            if not Path(path).is_file():
                raise CommandError(
                    f"{path} not found: set TLS_CERT_FILE/TLS_KEY_FILE, or run "
                    "`manage.py maketlscert` for a development certificate"
                )
        # Many idle connections need many descriptors: raise the soft limit to the hard one.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's AUTH deprecation noise
        try:
            loop_factory = event_loop_factory(settings.SMTP_EVENT_LOOP)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        try:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run(RelayServer(specs, bind=opts["bind"],
                                       delivery="delivery" in roles,
                                       intake="intake" in roles,
                                       webhooks="webhooks" in roles).run())
        except OSError as exc:
            raise CommandError(str(exc)) from None

    def check_running(self, bind: str, specs) -> None:
        from relay.health import run_checks

        checks = run_checks(bind, specs, settings.TLS_CERT_FILE, settings.TLS_KEY_FILE)
        for check in checks:
            self.stdout.write(str(check))
        failed = [c.name for c in checks if not c.ok]
        if failed:
            raise CommandError(f"{len(failed)} check(s) failed: {', '.join(failed)}")
