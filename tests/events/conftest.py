"""The webhook tests' fixtures: a receiver, an endpoint of alice's pointing at it, and the
relay's TLS files for the runsmtp they start."""
import pytest

from events import webhooks
from tests.relay.conftest import tls_files  # noqa: F401

from .receiver import LOCAL, Receiver


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def endpoint(alice, receiver):
    with LOCAL:
        return webhooks.create_endpoint(alice, receiver.url, ["delivery", "failure"])
