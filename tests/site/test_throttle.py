"""smtpeter_site.throttle.FailureCounter, the counter of both throttles: in process (SMTP AUTH)
and in Django's cache (dashboard sign-in)."""
import time

import pytest
from django.core.cache.backends.locmem import LocMemCache

from smtpeter_site.throttle import FailureCounter


@pytest.fixture(params=["process", "cache"])
def counter(request):
    store = LocMemCache(f"throttle-{request.param}", {}) if request.param == "cache" else None
    return FailureCounter(3, 0.3, store=store, prefix="t:")


def test_blocked_at_the_limit_per_key_until_the_window_passes(counter):
    for _ in range(2):
        counter.add("a")
    assert not counter.blocked("a")
    counter.add("a")
    assert counter.blocked("a") and counter.blocked("b", "a") and not counter.blocked("b")
    time.sleep(0.35)
    assert not counter.blocked("a")


def test_clear_forgets_one_key(counter):
    for _ in range(3):
        counter.add("a")
        counter.add("b")
    counter.clear("a")
    assert not counter.blocked("a") and counter.blocked("b")


def test_a_limit_of_zero_never_blocks():
    counter = FailureCounter(0, 60)
    counter.add("a")
    assert not counter.blocked("a")


def test_in_process_the_window_slides():
    counter = FailureCounter(2, 0.6)
    counter.add("a")
    time.sleep(0.4)
    counter.add("a")
    assert counter.blocked("a")
    time.sleep(0.3)  # the first failure is out of the window, the second is not
    assert not counter.blocked("a")
    counter.add("a")
    assert counter.blocked("a")


def test_distinct_counts_values_not_failures():
    counter = FailureCounter(2, 60, distinct=True)
    counter.add("ip", b"alice")
    counter.add("ip", b"alice")
    assert not counter.blocked("ip")
    counter.add("ip", b"bob")
    assert counter.blocked("ip")
    with pytest.raises(ValueError):
        FailureCounter(2, 60, distinct=True, store=LocMemCache("x", {}))
