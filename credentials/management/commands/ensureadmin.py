"""Create a first staff account when no superuser exists and print its password once."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from credentials.services import generate_password


class Command(BaseCommand):
    help = "Create the first admin account (name 'admin') if there is no superuser yet."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options):
        User = get_user_model()
        admins = list(
            User.objects.filter(is_superuser=True)
            .order_by("pk")
            .values_list(User.USERNAME_FIELD, flat=True)
        )
        if admins:
            self.stdout.write(
                f"An admin account exists already ({', '.join(admins)}); not creating one.\n"
                f"Lost its password? Set a new one with: "
                f"python manage.py changepassword {admins[0]}"
            )
            return
        password = generate_password()
        User.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(
            self.style.SUCCESS("Created the first admin account (shown once, keep it):")
        )
        self.stdout.write(f"  username: {username}\n  password: {password}")
