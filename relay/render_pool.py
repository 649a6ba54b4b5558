"""Rendering off the event loop: a pool of processes that apply a message's features, where a
render that crashes its process or runs past its time costs that render only.

`RenderPool.run(fn, *args)` runs fn in a worker process. At most one job per process is in
flight, so a job's time limit counts its own run, not a wait in line. A job past the limit has
its pool's processes killed (a hung render never frees its process otherwise) and fails with
RenderFailed. A pool that breaks (a process crashed: css-inline can overflow its stack and
die by SIGSEGV) fails every job in it; each such job is retried alone in a pool of one,
where a job that breaks it again is the culprit and fails. runsmtp itself never sees the crash.

`render_job` is what delivery runs there: it imports features and senders.dkim only (no
Django), so the worker processes start small. It also DKIM-signs what it rendered when given
signers, so each copy crosses the process boundary once (bench/README.md: 0.1-0.15 ms of
runsmtp's loop per recipient saved against a signing job of its own). `sign_job` signs the
unrendered mail of several messages in one job (relay.signing.SignBatcher).
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from typing import Any

from features.render import Prepared, RenderContext, prepare
from senders.dkim import Signer, sign

log = logging.getLogger("relay.render")


class RenderFailed(Exception):
    """The render did not finish: its process crashed or it passed the time limit."""


class _Broken(Exception):
    def __init__(self, timed_out: bool):
        self.timed_out = timed_out


class RenderPool:
    def __init__(self, workers: int, timeout: float):
        self.workers = workers
        self.timeout = timeout
        # forkserver, not fork: runsmtp has threads (queue writer, AUTH, database) that a
        # forked child would inherit mid-lock; the fork server is a clean process.
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload([__name__])
        self._pool: ProcessPoolExecutor | None = None
        self._solo: ProcessPoolExecutor | None = None
        self._slots = asyncio.Semaphore(workers)
        self._solo_lock = asyncio.Lock()
        self.crashes = 0
        self.timeouts = 0

    def _new(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=self._context)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) in a worker process; RenderFailed if it crashes or passes the timeout.
        An exception fn raises comes back as itself."""
        async with self._slots:
            if self._pool is None:
                self._pool = self._new(self.workers)
            pool = self._pool
            try:
                return await self._call(pool, fn, args)
            except _Broken as exc:
                self._discard(pool)
                if exc.timed_out:
                    self.timeouts += 1
                    raise RenderFailed(
                        f"render passed RENDER_TIMEOUT ({self.timeout:g} s)") from None
        # The pool broke under this job or a neighbour: only a run alone can tell which.
        async with self._solo_lock:
            if self._solo is None:
                self._solo = self._new(1)
            solo = self._solo
            try:
                return await self._call(solo, fn, args)
            except _Broken as exc:
                self._discard(solo)
                if exc.timed_out:
                    self.timeouts += 1
                    raise RenderFailed(
                        f"render passed RENDER_TIMEOUT ({self.timeout:g} s)") from None
                self.crashes += 1
                raise RenderFailed("render process crashed") from None

    async def start(self) -> None:
        """Start the processes now rather than under the first message."""
        await self.run(_ready)

    async def _call(self, pool: ProcessPoolExecutor, fn: Callable, args: tuple) -> Any:
        loop = asyncio.get_running_loop()
        try:
            # submit() starts missing processes and waits for them: the first start of the
            # fork server imports the features (most of a second); never on the loop.
            future = await loop.run_in_executor(None, lambda: pool.submit(fn, *args))
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except TimeoutError:
            raise _Broken(timed_out=True) from None
        except BrokenProcessPool:
            raise _Broken(timed_out=False) from None

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        if pool is self._pool:
            self._pool = None
        if pool is self._solo:
            self._solo = None
        _kill(pool)

    def close(self) -> None:
        for pool in (self._pool, self._solo):
            if pool is not None:
                _kill(pool)
        self._pool = self._solo = None


def _kill(pool: ProcessPoolExecutor) -> None:
    # ProcessPoolExecutor cannot stop a running job; its processes can be killed.
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def _ready() -> bool:
    return True


# -- the job delivery runs in the pool --------------------------------------------------------


@dataclass(frozen=True)
class RenderJob:
    message_id: int
    raw: bytes
    features: dict[str, bool]
    inliner: str
    context: RenderContext  # the message's; recipient fields are filled per recipient
    recipients: list[tuple[int, str]]  # (recipient id, address)
    lists: bool = False  # send back the message's click and open URL lists too
    signers: tuple[Signer, ...] = ()  # DKIM-sign every rendered copy with these (relay.signing)


@dataclass
class RenderOutput:
    bodies: list[bytes]  # each distinct rendered message once
    recipients: dict[int, tuple[int, str]]  # recipient id -> (index into bodies, envelope sender)
    warnings: list[str] = field(default_factory=list)
    # What the tracking tokens' indexes stand for (RenderJob.lists): click URLs, and open URLs
    # with the pixel ("") first.
    links: list[str] | None = None
    images: list[str] | None = None
    sign_error: str = ""  # signing failed: the bodies are unsigned (relay.signing warns)


# A newsletter comes in many jobs (one per claim and chunk): its costly half is made once per
# process. Few entries: each holds a parsed message.
_prepared: OrderedDict[tuple, Prepared] = OrderedDict()
_PREPARED_KEEP = 4


def render_job(job: RenderJob) -> RenderOutput:
    """Render a message for some of its recipients (runs in a pool process)."""
    key = (job.message_id, tuple(sorted(job.features.items())), job.inliner,
           job.context.tracking_base_url)
    prepared = _prepared.get(key)
    if prepared is None:
        prepared = prepare(job.raw, job.features, job.inliner, job.context.tracking_base_url)
        _prepared[key] = prepared
        while len(_prepared) > _PREPARED_KEEP:
            _prepared.popitem(last=False)
    else:
        _prepared.move_to_end(key)
    index: dict[bytes, int] = {}
    out = RenderOutput([], {})
    warnings: dict[str, None] = {}
    for rid, address in job.recipients:
        rendered = prepared.for_recipient(replace(job.context, recipient_id=rid,
                                                  recipient=address))
        i = index.get(rendered.message)
        if i is None:
            i = index[rendered.message] = len(out.bodies)
            out.bodies.append(rendered.message)
        out.recipients[rid] = (i, rendered.envelope_sender)
        warnings.update(dict.fromkeys(rendered.warnings))
    out.warnings = list(warnings)
    if job.signers:
        try:
            out.bodies = [sign(body, job.signers) for body in out.bodies]
        except Exception as exc:  # noqa: BLE001 - sent unsigned, and the message page says so
            out.sign_error = f"{type(exc).__name__}: {exc}"
    if job.lists:
        out.links, out.images = prepared.links, prepared.images
    return out


def sign_job(bodies: list[bytes], signer_sets: list[tuple[Signer, ...]],
             which: list[int]) -> list[bytes | str]:
    """DKIM-sign bodies[i] with signer_sets[which[i]] (runs in a pool process): the unrendered
    mail of several messages in one round trip (relay.signing.SignBatcher). A body that cannot
    be signed comes back as the reason (str), costing only its own message."""
    out: list[bytes | str] = []
    for body, n in zip(bodies, which, strict=True):
        try:
            out.append(sign(body, signer_sets[n]))
        except Exception as exc:  # noqa: BLE001 - that message goes out unsigned, with a warning
            out.append(f"{type(exc).__name__}: {exc}")
    return out
