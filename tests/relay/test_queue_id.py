"""Queue ids: unique within a process, ordered by time, fresh in a forked child."""
import multiprocessing
import re

from relay.models import new_queue_id


def _child_ids(queue) -> None:
    queue.put([new_queue_id() for _ in range(100)])


def test_queue_ids_are_unique_and_time_ordered():
    ids = [new_queue_id() for _ in range(200_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9A-F]{17}", i) for i in ids[:1000])
    stamps = [int(i[:11], 16) for i in ids]
    assert stamps == sorted(stamps)  # the millisecond part never goes back


def test_a_forked_child_does_not_repeat_its_parents_ids():
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_ids, args=(queue,))
    child.start()
    theirs = queue.get(timeout=10)
    child.join(timeout=10)
    ours = [new_queue_id() for _ in range(100)]
    # Without the reseed both would count on from the same state and meet at once; with it
    # the 24-bit serials start at random (a chance overlap: about 1 in 800,000).
    assert not {i[11:] for i in theirs} & {i[11:] for i in ours}
