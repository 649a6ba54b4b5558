"""`manage.py parsebounce FILE... [--json]`: what relay.reports finds in each file, for operators
asking "why was this counted as hard?"."""
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from relay.reports import MAX_BYTES, as_json, parse_report


class Command(BaseCommand):
    help = ("Read bounce, complaint or auto-reply emails (.eml files) and print what the parser "
            "finds: type, recipients, status, class and reason.")

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", metavar="FILE")
        parser.add_argument("--json", action="store_true",
                            help="one JSON object per file, one a line")

    def handle(self, *args, **options):
        failed = []
        for name in options["files"]:
            try:
                with open(name, "rb") as fh:
                    raw = fh.read(MAX_BYTES)  # the parser reads no more than this anyway
            except OSError as exc:
                self.stderr.write(f"{name}: {exc.strerror or exc}")
                failed.append(name)
                continue
            report = parse_report(raw)
            if options["json"]:
                self.stdout.write(json.dumps(as_json(report, name), ensure_ascii=False))
            else:
                self.stdout.write(self._human(name, report))
        if failed:
            raise CommandError(f"could not read: {', '.join(failed)}")

    def _human(self, name: str, report) -> str:
        lines = [f"{Path(name).name}: {report.type}"
                 + (f" ({report.feedback_type})" if report.feedback_type else "")
                 + (f", found by {report.source}" if report.source else "")]
        if report.subject:
            lines.append(f"  subject: {report.subject}")
        for r in report.recipients:
            if report.type == "complaint":
                lines.append(f"  {r.address}: complained")
                continue
            verdict = f" -> {r.class_} / {r.reason}" if r.class_ else ""
            lines.append(f"  {r.address}: {r.status or '-'} {r.action}{verdict}".rstrip())
            if r.diagnostic:
                lines.append(f"    said: {r.diagnostic}")
            if r.remote_mta:
                lines.append(f"    remote MTA: {r.remote_mta}")
        o = report.original
        if o.message_id or o.return_path:
            lines.append(f"  original: Message-ID <{o.message_id}>, Return-Path <{o.return_path}>")
        if report.arf and report.arf.source_ip:
            lines.append(f"  source IP: {report.arf.source_ip}")
        if not report.recipients:
            lines.append("  no recipient found")
        return "\n".join(lines)
