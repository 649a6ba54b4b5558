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
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("An admin account exists already; not creating one.")
            return
        password = generate_password()
        User.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(
            self.style.SUCCESS("Created the first admin account (shown once, keep it):")
        )
        self.stdout.write(f"  username: {username}\n  password: {password}")
