"""Shared fixtures: users, and settings that let the test client speak plain http."""
import pytest
from django.contrib.auth.hashers import Argon2PasswordHasher

from events.webhooks import forget_caches


class QuickArgon2PasswordHasher(Argon2PasswordHasher):
    # Still argon2id (the prefix and the verifier are the real ones), with small costs so
    # that creating hundreds of logins in tests takes seconds, not minutes.
    time_cost = 1
    memory_cost = 1024
    parallelism = 1


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.SECURE_SSL_REDIRECT = False
    settings.PASSWORD_HASHERS = ["tests.conftest.QuickArgon2PasswordHasher"]
    # Endpoints a test made are rolled back with it: no cached copy may outlive them.
    forget_caches()
    yield
    forget_caches()


@pytest.fixture(autouse=True)
def _runsmtp_idle_before_flush(request):
    """A test that let a running runsmtp (a module-scoped server with the delivery or intake
    role) work on its database ends once that server is idle (tests.relay.smtp_helpers.
    wait_until_idle), before pytest-django empties the database."""
    marker = request.node.get_closest_marker("django_db")
    transactional = ("transactional_db" in request.fixturenames
                     or (marker is not None and (marker.kwargs.get("transaction")
                                                 or marker.args[:1] == (True,))))
    if transactional:
        # Set up now, so torn down (flushed) after this fixture's wait.
        request.getfixturevalue("transactional_db")
    yield
    if not transactional:
        return
    from tests.relay.smtp_helpers import running_workers, wait_until_idle

    workers = running_workers()
    if workers:
        wait_until_idle(workers)


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", "alice@example.com", "alice-pw-1234!")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", "bob@example.com", "bob-pw-1234!")


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(
        "auditor", "auditor@example.com", "auditor-pw-1234!", is_staff=True
    )
