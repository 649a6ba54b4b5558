"""relay.render_pool with real processes: a crash or a hang costs its own job only, the pool
comes back, and delivery's render job renders each recipient."""
import asyncio
import os

import pytest

from features.render import RenderContext
from relay.render_pool import RenderFailed, RenderJob, RenderPool, render_job

from . import pool_jobs


async def _with_pool(workers, timeout, body):
    pool = RenderPool(workers, timeout)
    try:
        return await body(pool)
    finally:
        pool.close()


def test_jobs_run_in_other_processes():
    async def body(pool):
        return await asyncio.gather(*(pool.run(pool_jobs.echo, i) for i in range(6)))

    results = asyncio.run(_with_pool(2, 30, body))
    assert [v for v, _ in results] == list(range(6))
    assert os.getpid() not in {pid for _, pid in results}


def test_a_crash_costs_only_the_crashing_job_and_the_pool_comes_back():
    async def body(pool):
        jobs = [pool.run(pool_jobs.echo, i) for i in range(4)]
        jobs.insert(2, pool.run(pool_jobs.segfault, "x"))
        results = await asyncio.gather(*jobs, return_exceptions=True)
        after = await pool.run(pool_jobs.echo, "after")
        return results, after, pool.crashes

    results, after, crashes = asyncio.run(_with_pool(2, 30, body))
    assert isinstance(results[2], RenderFailed) and "crashed" in str(results[2])
    assert [r[0] for i, r in enumerate(results) if i != 2] == [0, 1, 2, 3]
    assert after[0] == "after" and crashes == 1


def test_a_hung_job_fails_at_the_timeout_and_its_neighbours_still_finish():
    async def body(pool):
        loop = asyncio.get_running_loop()
        start = loop.time()
        results = await asyncio.gather(pool.run(pool_jobs.hang, 60), pool.run(pool_jobs.hang, 0.2),
                                       pool.run(pool_jobs.echo, 1), return_exceptions=True)
        return results, loop.time() - start, await pool.run(pool_jobs.echo, 2)

    results, took, after = asyncio.run(_with_pool(2, 1.5, body))
    assert isinstance(results[0], RenderFailed) and "RENDER_TIMEOUT" in str(results[0])
    assert results[1] == 0.2 and results[2][0] == 1 and after[0] == 2
    assert took < 10


def test_an_exception_in_the_job_comes_back_as_itself():
    async def body(pool):
        return await pool.run(pool_jobs.raises, 1)

    with pytest.raises(ValueError, match="bad 1"):
        asyncio.run(_with_pool(1, 30, body))


def test_render_job_renders_each_recipient_and_shares_identical_bodies():
    raw = (b"Subject: hi\r\nX-SMTPeter-TrackClicks: true\r\nContent-Type: text/html\r\n\r\n"
           b'<a href="https://example.com/x">x</a>\r\n')
    context = RenderContext(message_id=7, recipient_id=0, mail_from="app@example.com",
                            tracking_base_url="https://t.example/t/", tracking_key=b"k" * 32,
                            verp_key=b"v" * 32, bounce_domain="bounces.test")
    job = RenderJob(7, raw, {"clicktracking": True}, "css-inline", context,
                    [(1, "a@example.org"), (2, "b@example.org")])
    out = render_job(job)
    assert len(out.bodies) == 2  # each recipient's own tracking token
    assert all(b"https://t.example/t/c/" in body and b"X-SMTPeter" not in body
               for body in out.bodies)
    assert {sender for _, sender in out.recipients.values()} == {"app@example.com"}
    plain = render_job(RenderJob(8, raw, {}, "css-inline", context, job.recipients))
    assert len(plain.bodies) == 1 and set(plain.recipients) == {1, 2}
    verp = render_job(RenderJob(9, raw, {"bouncetracking": True}, "css-inline", context,
                                job.recipients))
    senders = [sender for _, sender in verp.recipients.values()]
    assert len(verp.bodies) == 1 and len(set(senders)) == 2
    assert all(s.endswith("@bounces.test") for s in senders)
