"""Create an SMTP login for a customer and print its username and password once."""
import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from credentials.services import check_description, check_feature_names, create_login


class Command(BaseCommand):
    help = "Create an SMTP login; the password is printed once and stored only as an argon2 hash."

    def add_arguments(self, parser):
        parser.add_argument("--owner", required=True, help="username of the customer")
        parser.add_argument(
            "--features", default="",
            help="comma-separated: "
            "clicktracking,openstracking,preventscam,bouncetracking,inlinecss",
        )
        parser.add_argument("--description", default="")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, owner: str, features: str, description: str, json: bool, **opts):
        User = get_user_model()
        try:
            user = User.objects.get(username=owner)
        except User.DoesNotExist:
            raise CommandError(f"no user named {owner!r}") from None
        try:
            names = check_feature_names(features.split(","))
            check_description(description)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        login, password = create_login(user, features=names, description=description)
        if json:
            self.stdout.write(_json({
                "username": login.username, "password": password, "owner": owner,
                "features": login.enabled_features(), "description": login.description,
            }))
        else:
            self.stdout.write(f"username: {login.username}\npassword: {password}")
            self.stdout.write(f"features: {', '.join(login.enabled_features()) or '(none)'}")
            self.stderr.write("The password is shown only now; store it safely.")


def _json(obj) -> str:
    return json.dumps(obj, indent=None)
