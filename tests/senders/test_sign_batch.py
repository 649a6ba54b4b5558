"""relay.signing.SignBatcher with real render processes: the unrendered messages that reach
signing together are signed in a few pool jobs, not one each; every signature verifies, and a
message that cannot be signed fails alone."""
import asyncio

import pytest

from relay.render_pool import RenderPool
from relay.signing import SignBatcher, SignFailed

from .verify import dkimpy_results


def plain(n: int) -> bytes:
    return (f"From: App <app{n}@example.com>\r\nTo: bob@example.org\r\nSubject: note {n}\r\n"
            f"Message-ID: <{n}@example.com>\r\n\r\nhello {n}\r\n").encode()


def test_a_batch_is_signed_in_few_jobs_and_a_bad_message_fails_alone(dns_server, published):
    rsa = (published[0],)
    jobs = []

    async def body():
        pool = RenderPool(2, 30)
        run = pool.run

        async def counted(fn, *args):
            jobs.append(len(args[0]))
            return await run(fn, *args)

        pool.run = counted
        batcher = SignBatcher(pool)
        try:
            return await asyncio.gather(
                *(batcher.sign([plain(n)], rsa) for n in range(30)),
                batcher.sign([b"Subject: no From header\r\n\r\nhi\r\n"], rsa),
                batcher.sign([plain(30), plain(31)], rsa),
                return_exceptions=True)
        finally:
            pool.close()

    results = asyncio.run(body())
    assert sorted(jobs) == [8, 25]  # 33 bodies in two jobs, not 32
    *good, bad, pair = results
    assert isinstance(bad, SignFailed) and str(bad) == "SigningError: no From header"
    assert len(pair) == 2
    for n, signed in enumerate([g[0] for g in good] + pair):
        assert signed.endswith(f"hello {n}\r\n".encode())
        assert dkimpy_results(signed, dns_server.nameserver) == [("example.com", True)]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_broken_key_fails_only_its_own_message_and_the_next_batch_signs(
        dns_server, published, workers):
    rsa = (published[0],)

    async def body():
        pool = RenderPool(workers, 30)
        batcher = SignBatcher(pool)
        try:
            # A signer that cannot be used (a broken key) fails every body it signs.
            broken = (type(published[0])("example.com", "r1", "rsa-sha256", b"not a key"),)
            first = await asyncio.gather(batcher.sign([plain(1)], broken),
                                         batcher.sign([plain(2)], rsa), return_exceptions=True)
            second = await batcher.sign([plain(3)], rsa)
            return first, second
        finally:
            pool.close()

    (failed, signed), [again] = asyncio.run(body())
    assert isinstance(failed, SignFailed)
    assert dkimpy_results(signed[0], dns_server.nameserver) == [("example.com", True)]
    assert dkimpy_results(again, dns_server.nameserver) == [("example.com", True)]
