"""The relay's fixtures for the webhook tests that run a real runsmtp."""
from tests.relay.conftest import tls_files  # noqa: F401
