"""List SMTP logins with their feature sets (never a hash)."""
import json

from django.core.management.base import BaseCommand

from credentials.models import FEATURE_NAMES, Login


class Command(BaseCommand):
    help = "List SMTP logins and their features."

    def add_arguments(self, parser):
        parser.add_argument("--owner", help="only this customer's logins")
        parser.add_argument("--json", action="store_true", help="print a JSON array")

    def handle(self, *args, owner: str | None, json: bool, **options):
        qs = Login.objects.select_related("owner").order_by("owner__username", "username")
        if owner:
            qs = qs.filter(owner__username=owner)
        rows = [
            {
                "username": login.username,
                "owner": login.owner.username,
                "description": login.description,
                "enabled": login.enabled,
                "features": login.enabled_features(),
                "created": login.created.isoformat(),
                "last_used": login.last_used.isoformat() if login.last_used else None,
            }
            for login in qs
        ]
        if json:
            self.stdout.write(_dumps(rows))
            return
        header = ["username", "owner", "enabled", *FEATURE_NAMES, "last used", "description"]
        self.stdout.write("\t".join(header))
        for r in rows:
            cells = [r["username"], r["owner"], "yes" if r["enabled"] else "no"]
            cells += ["on" if f in r["features"] else "-" for f in FEATURE_NAMES]
            cells += [r["last_used"] or "never", r["description"]]
            self.stdout.write("\t".join(cells))


def _dumps(rows) -> str:
    return json.dumps(rows, indent=2)
