"""The AUTH failure counters in process (relay.smtp_auth.Authenticator), against the test
database: throttling per (IP, username) holds for long usernames, and what the counters keep
for a failed username does not grow with its length (a username may be 12 KB, 20,000 of
them)."""
import asyncio
import logging
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from relay.smtp_auth import Authenticator
from smtpeter_site.throttle import FailureCounter

pytestmark = pytest.mark.django_db(transaction=True)
LONG = "u" * 12_000


@pytest.fixture
def authenticator(caplog):
    caplog.set_level(logging.ERROR, logger="relay.auth")  # no log records held by pytest
    pools = [ThreadPoolExecutor(1), ThreadPoolExecutor(1)]
    yield Authenticator(*pools)
    for pool in pools:
        pool.submit(lambda: connection.close()).result()  # the thread's own connection
        pool.shutdown()


def test_long_usernames_are_throttled_each_on_its_own(authenticator):
    authenticator.failures.limit = authenticator.usernames.limit = 3

    async def attempts():
        codes = []
        for name in [LONG + "a"] * 3 + [LONG + "b", LONG + "a"]:
            outcome = await authenticator.check("192.0.2.1", name, "wrong")
            codes.append("throttled" if outcome.throttled else "failed")
        return codes

    # The fourth name differs from the first only in its last character: not throttled.
    assert asyncio.run(attempts()) == ["failed"] * 4 + ["throttled"]


def test_failure_counters_do_not_keep_the_usernames(authenticator):
    # One IP, no throttle: count every failure.
    authenticator.failures.limit = authenticator.usernames.limit = 10_000

    async def attempts():
        for i in range(200):
            outcome = await authenticator.check("192.0.2.1", f"{i:04d}{LONG}", "wrong")
            assert outcome.login is None and not outcome.throttled

    asyncio.run(attempts())  # a warm-up: thread pools, connections, caches
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        authenticator.failures = FailureCounter(10_000, 900)
        authenticator.usernames = FailureCounter(10_000, 900, distinct=True)
        asyncio.run(attempts())
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # 200 usernames of 12 KB are 2.4 MB; their counters should take a small fraction of that.
    assert kept < 600_000, kept
