"""Fixtures for the dashboard tests: a clean cache (sign-in throttling) and signed-in clients."""
import pytest
from django.core.cache import cache
from django.test import Client

from credentials import services


@pytest.fixture(autouse=True)
def _clean_cache():
    cache.clear()
    yield
    cache.clear()


def signed_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


@pytest.fixture
def alice_client(alice):
    return signed_in(alice)


@pytest.fixture
def bob_client(bob):
    return signed_in(bob)


@pytest.fixture
def staff_client(staff):
    return signed_in(staff)


@pytest.fixture
def alice_login(alice):
    login, _ = services.create_login(alice, features=["clicktracking"], description="shop")
    return login


@pytest.fixture
def bob_login(bob):
    login, _ = services.create_login(bob, features=["openstracking"], description="bob's app")
    return login
