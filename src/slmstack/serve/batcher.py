"""``MicroBatcher``: concurrent requests to one model, gathered into batches.

The method: every :meth:`MicroBatcher.submit` appends its items to one FIFO queue per
target (a skill or a workflow). One worker task per batcher takes batches from the head
of the queue, at most ``max_batch`` items and ``max_tokens`` (summed by ``size_of``)
each, and runs ``fn`` on them in an executor thread, never on the event loop.

Gathering policy (work-conserving). Batches of one target run one at a time, and the
worker never sits idle while items wait: when no batch is running it yields the event
loop one turn, so that submissions made in that same turn (a ``gather``, the requests
read off one socket poll) join, and dispatches. It lingers for more only while each
turn keeps bringing new items (a burst still arriving), and never past ``max_wait_ms``
after the head item was queued nor past a bound; the first quiet turn dispatches. So a
lone request pays one loop turn, not ``max_wait_ms``. While a batch runs, new items
queue behind it and the next batch takes them all (up to the bounds) as soon as it
ends, so the batch size grows with the load by itself: an idle server answers at once,
a busy one runs full batches. One at a time because the model call already uses the
cores it is given (torch's threads); two concurrent batches of one model would share
those cores and double each other's latency.

Limits. The queue is bounded (``queue_size`` items): a submit that does not fit raises
:class:`~slmstack.errors.Overloaded` at once, with ``retry_after_s`` estimated from the
measured batch times (the time to run the items ahead of it), never an unbounded wait.
A submit with a ``deadline`` (a :func:`time.monotonic` value) raises
:class:`~slmstack.errors.DeadlineExceeded` when it passes before its batch begins (then
it is not run); a request whose batch has begun is answered: its work is paid for, and a
504 would make the client pay again. :meth:`close` stops taking new work
(:class:`~slmstack.errors.ShuttingDown`) and finishes the queued work within the drain
timeout; what is still queued after it fails with ``ShuttingDown``.

Splitting. A caller's items may be split over two batches (a batch is cut at
``max_batch``); its results come back reassembled in its order. An item larger than
``max_tokens`` runs alone in a batch of its own rather than never.

Failures. An exception raised by ``fn`` reaches every caller with items in that batch,
and no other. One exception is isolated: a :class:`~slmstack.errors.DataError` (the way a
skill refuses a bad input) from a batch holding items of several callers re-runs ``fn``
once per caller, so one bad request fails alone and the others get their results. Any
other exception (the model failed, memory ran out) is delivered to the whole batch at
once: re-running it per caller would repeat an expensive failure N times.

Cost: about 8 µs per item with 64 concurrent one-item callers (10,000 items in 157
batches, on 2 busy cores), against 29 µs for one executor hop per item without it
(``bench/serve_batcher.py``).

Example:
    >>> import asyncio
    >>> async def main():
    ...     batcher = MicroBatcher("upper", lambda texts: [t.upper() for t in texts])
    ...     await batcher.start()
    ...     out = await asyncio.gather(*(batcher.submit([t]) for t in "abc"))
    ...     await batcher.close(drain_timeout_s=1.0)
    ...     return out
    >>> asyncio.run(main())
    [['A'], ['B'], ['C']]
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, cast

from slmstack.errors import (
    ConfigError,
    DataError,
    DeadlineExceeded,
    Overloaded,
    ServeError,
    ShuttingDown,
)
from slmstack.serve._batch_queue import BatchQueue, Entry, Submission, by_submission

ItemT = TypeVar("ItemT")
OutT = TypeVar("OutT")

_log = logging.getLogger(__name__)

_SMOOTHING = 0.2  # weight of the newest batch in the moving averages behind retry_after_s
_UNMEASURED_RETRY_S = 1.0  # retry_after_s before any batch has been timed


def _one(item: object) -> int:
    return 1  # every item counts as one token: max_batch bounds the batch


class MicroBatcher(Generic[ItemT, OutT]):
    """Gathers concurrent submissions to one target into batches for ``fn``.

    Args:
        name: the target, in errors and logs (``"skill:intent"``).
        fn: runs one batch: a list of items in, one output per item out, in order.
            Called in ``executor``, one batch at a time.
        max_batch: most items in one batch.
        max_wait_ms: longest an idle worker lingers after the head item was queued
            while more keep arriving (a lone item does not wait for it).
        max_tokens: most tokens in one batch, summed with ``size_of``; an item larger
            than this runs alone.
        size_of: an item's size in tokens (default 1 per item).
        queue_size: most items waiting; a submit that does not fit raises ``Overloaded``.
        executor: where ``fn`` runs; default: a private one-thread pool, shut down by
            :meth:`close`.
        on_batch: called with (batch size, seconds) after each batch (metrics).

    Use it from one event loop: :meth:`start` binds it to the running loop.
    """

    def __init__(
        self,
        name: str,
        fn: Callable[[list[ItemT]], Sequence[OutT]],
        *,
        max_batch: int = 64,
        max_wait_ms: float = 2.0,
        max_tokens: int = 16384,
        size_of: Callable[[ItemT], int] = _one,
        queue_size: int = 1024,
        executor: concurrent.futures.Executor | None = None,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        counts = {"max_batch": max_batch, "max_tokens": max_tokens, "queue_size": queue_size}
        for key, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"The {key!r} parameter of MicroBatcher {name!r} must be an int >= 1. "
                    f"Got {value!r} instead."
                )
        wait_ok = isinstance(max_wait_ms, int | float) and 0 <= max_wait_ms < math.inf
        if isinstance(max_wait_ms, bool) or not wait_ok:
            raise ConfigError(
                f"The 'max_wait_ms' parameter of MicroBatcher {name!r} must be a number of "
                f"milliseconds >= 0. Got {max_wait_ms!r} instead."
            )
        self.name = name
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait_s = float(max_wait_ms) / 1000
        self.max_tokens = max_tokens
        self.size_of = size_of
        self.queue_size = queue_size
        self.on_batch = on_batch
        self._own_executor = executor is None
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"batch-{name}"
        )
        self._queue = BatchQueue()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arrived = asyncio.Event()
        self._failed: BaseException | None = None
        self._batch_s: float | None = None  # moving average of seconds per batch
        self._batch_n = 1.0  # moving average of items per batch
        self.batches_run = 0

    def __repr__(self) -> str:
        return f"MicroBatcher({self.name!r}, max_batch={self.max_batch}, depth={self.depth})"

    @property
    def depth(self) -> int:
        """Items queued and not yet taken into a batch (for metrics)."""
        return self._queue.depth

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start the worker task on the running event loop."""
        if self._task is not None:
            raise ServeError(f"batcher {self.name!r} is already started; start it once")
        self._loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()
        self._task = self._loop.create_task(self._work(), name=f"batcher:{self.name}")

    async def close(self, drain_timeout_s: float) -> None:
        """Stop taking new work and finish the queued work, for up to ``drain_timeout_s``.

        New submissions raise :class:`ShuttingDown` from now on. Items still queued (or
        running) when the timeout passes fail with :class:`ShuttingDown`.
        """
        self._closing = True
        task = self._task
        try:
            if task is not None and not task.done():
                self._arrived.set()
                try:
                    await asyncio.wait_for(asyncio.shield(task), drain_timeout_s)
                except TimeoutError:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    self._fail_queued(
                        ShuttingDown(
                            f"{self.name} did not finish its queue within the drain timeout "
                            f"of {drain_timeout_s:g} s; retry on another instance"
                        )
                    )
        finally:
            if self._own_executor:
                self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ submitting
    async def submit(self, items: Sequence[ItemT], *, deadline: float | None = None) -> list[OutT]:
        """Queue ``items`` and return their outputs, in order, once their batches ran.

        Args:
            items: the items; they may be split over several batches.
            deadline: a :func:`time.monotonic` time after which the caller gets
                :class:`DeadlineExceeded` instead of results.

        Raises:
            Overloaded: the queue has no room for all of ``items`` now.
            DeadlineExceeded: ``deadline`` passed first.
            ShuttingDown: :meth:`close` was called.
            DataError: more items than the queue can ever hold.
        """
        loop = self._loop
        if loop is None:
            raise ServeError(
                f"batcher {self.name!r} is not started; await batcher.start() on the serving "
                "event loop first (the app's startup does it)"
            )
        if self._closing:
            raise ShuttingDown(f"{self.name} is shutting down; retry on another instance")
        if self._failed is not None:
            raise ServeError(f"batcher {self.name!r} stopped: {self._failed!r}")
        n = len(items)
        if n == 0:
            return []
        if n > self.queue_size:
            raise DataError(
                f"{n} items in one request, more than the queue of {self.name} ever holds "
                f"({self.queue_size}); send at most {self.queue_size} items per request"
            )
        if self._queue.depth + n > self.queue_size:
            wait = self.retry_after_s(n)
            raise Overloaded(
                f"the queue of {self.name} is full ({self._queue.depth} of {self.queue_size} items "
                f"waiting, {n} more asked); retry after {wait:.3g} s",
                retry_after_s=wait,
            )
        now = time.monotonic()
        if deadline is not None and deadline <= now:
            raise DeadlineExceeded(
                f"the deadline of the request to {self.name} passed before it was queued"
            )
        sizes = [int(self.size_of(item)) for item in items]
        future: asyncio.Future[list[Any]] = loop.create_future()
        sub = Submission(future, [None] * n, n, deadline)
        self._queue.add(sub, items, sizes, now)
        self._arrived.set()
        timer = None if deadline is None else loop.call_later(deadline - now, self._expire, sub)
        try:
            return cast(list[OutT], await future)
        except asyncio.CancelledError:  # the caller went away: its queued items are not run
            self._queue.drop(sub)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def retry_after_s(self, n: int = 1) -> float:
        """Seconds until the queue has room for ``n`` more items, from measured batches."""
        if self._batch_s is None:
            return _UNMEASURED_RETRY_S
        excess = max(1, self._queue.depth + n - self.queue_size)
        batches = math.ceil(excess / max(self._batch_n, 1.0))
        return max(batches * self._batch_s, 0.001)

    # ------------------------------------------------------------------ callers' futures
    def _finish(self, sub: Submission, exc: BaseException) -> None:
        """Fail ``sub`` with ``exc`` (unless it already ended) and drop its queued items."""
        if not sub.future.done():
            sub.future.set_exception(exc)
        self._queue.drop(sub)

    def _expire(self, sub: Submission) -> None:
        if not sub.begun and not sub.future.done():  # begun: paid for, results follow
            why = (f"the request to {self.name} ran past its deadline before its batch began "
                   f"({self.depth} items queued), so it was not run and costs nothing; retry, "
                   "raise the deadline or send fewer items at once")  # fmt: skip
            self._finish(sub, DeadlineExceeded(why))

    def _deliver(self, batch: list[Entry], outputs: Sequence[Any]) -> None:
        for entry, out in zip(batch, outputs, strict=True):
            entry.sub.fulfil(entry, out)

    def _fail_queued(self, exc: BaseException) -> None:
        for sub in self._queue.pop_all():
            self._finish(sub, exc)

    # ------------------------------------------------------------------ the worker
    async def _work(self) -> None:
        try:
            while True:
                head = self._queue.head()
                if head is None:
                    if self._closing:
                        return
                    self._arrived.clear()
                    await self._arrived.wait()
                    continue
                await self._fill(head)
                batch = self._queue.take(
                    self.max_batch, self.max_tokens, time.monotonic(), self._expire
                )
                if batch:
                    await self._run(batch)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug here must not leave callers waiting forever
            _log.exception("batcher %s stopped", self.name)
            self._failed = exc
            self._fail_queued(ServeError(f"batcher {self.name!r} stopped: {exc!r}"))
            raise

    async def _fill(self, head: Entry) -> None:
        """Gather while items keep arriving: one loop turn, more only while turns bring more.

        Stops at the first turn that brought nothing new, at a bound, at ``max_wait_ms``
        after ``head`` was queued, or on close (see the module docstring).
        """
        until = head.queued_at + self.max_wait_s
        queue = self._queue
        while True:
            seen = queue.depth
            await asyncio.sleep(0)  # let this turn's submissions join
            full = queue.depth >= self.max_batch or queue.tokens >= self.max_tokens
            if full or self._closing or queue.depth <= seen or time.monotonic() >= until:
                return

    def _call(self, items: list[Any]) -> Sequence[Any]:
        """Run ``fn`` (in the executor) and check it returned one output per item."""
        outputs = self.fn(items)
        if not isinstance(outputs, Sequence) or len(outputs) != len(items):
            got = f"{len(outputs)} outputs" if isinstance(outputs, Sequence) else repr(outputs)
            raise ServeError(
                f"{self.name}: the batch function returned {got} for {len(items)} items; "
                "it must return one output per item, in order"
            )
        return outputs

    async def _run(self, batch: list[Entry]) -> None:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        try:  # cancelled (a drain timed out) while it or its re-runs per caller ran
            try:
                outputs = await loop.run_in_executor(self._executor, self._call,
                                                     [e.item for e in batch])  # fmt: skip
            except DataError as exc:
                groups = by_submission(batch)
                if len(groups) == 1:
                    self._finish(batch[0].sub, exc)
                else:
                    await self._isolate(groups)
            except Exception as exc:
                for entry in batch:
                    self._finish(entry.sub, exc)
            else:
                self._deliver(batch, outputs)
        except asyncio.CancelledError:  # callers answered already keep their answer
            stopped = ShuttingDown(f"{self.name} was stopped while this request's batch ran")
            for entry in batch:
                self._finish(entry.sub, stopped)
            raise
        finally:
            self._measured(len(batch), time.perf_counter() - start)

    async def _isolate(self, groups: list[list[Entry]]) -> None:
        """Run each caller's items alone, so that one caller's bad input fails it only."""
        loop = asyncio.get_running_loop()
        for group in groups:
            if group[0].sub.future.done():
                continue
            try:
                outputs = await loop.run_in_executor(self._executor, self._call,
                                                     [e.item for e in group])  # fmt: skip
            except Exception as exc:
                self._finish(group[0].sub, exc)
            else:
                self._deliver(group, outputs)

    def _measured(self, size: int, seconds: float) -> None:
        self.batches_run += 1
        if self._batch_s is None:
            self._batch_s, self._batch_n = seconds, float(size)
        else:
            self._batch_s += _SMOOTHING * (seconds - self._batch_s)
            self._batch_n += _SMOOTHING * (size - self._batch_n)
        if self.on_batch is not None:
            try:
                self.on_batch(size, seconds)
            except Exception:  # metrics must not stop the model: log it loudly and go on
                _log.exception("on_batch callback of batcher %s failed", self.name)


__all__ = ["MicroBatcher"]
