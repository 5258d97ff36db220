"""MicroBatcher: batches under concurrency, both bounds, order, overload, deadlines, drain.

Every test drives a real event loop with ``asyncio.run`` and a plain function as the
model; functions that must hold a batch open block on a ``threading.Event`` (they run in
the batcher's executor thread, so the loop stays free to take more submissions).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from slmstack.errors import (
    ConfigError,
    DataError,
    DeadlineExceeded,
    Overloaded,
    ServeError,
    ShuttingDown,
)
from slmstack.serve.batcher import MicroBatcher


class Recorder:
    """A batch function that records each batch (and its thread) and may block or fail."""

    def __init__(self, fail: Callable[[list[str]], Exception | None] = lambda b: None):
        self.batches: list[list[str]] = []
        self.threads: set[int] = set()
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()
        self.fail = fail

    def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        self.threads.add(threading.get_ident())
        self.started.set()
        self.release.wait(10)
        error = self.fail(items)
        if error is not None:
            raise error
        return [item.upper() for item in items]


async def until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Yield to the loop until ``predicate`` holds."""
    end = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < end, "timed out waiting"
        await asyncio.sleep(0.001)


def run(coro_fn: Callable[[], object]) -> object:
    return asyncio.run(coro_fn())  # type: ignore[arg-type]


def test_concurrent_submissions_form_few_batches_within_max_batch():
    fn = Recorder()

    async def main():
        batcher = MicroBatcher("t", fn, max_batch=8, max_wait_ms=50)
        await batcher.start()
        out = await asyncio.gather(*(batcher.submit([f"q{i}"]) for i in range(50)))
        await batcher.close(1.0)
        return out

    out = run(main)
    assert out == [[f"Q{i}"] for i in range(50)]
    assert len(fn.batches) <= 10  # 50 one-item calls without batching
    assert max(len(b) for b in fn.batches) <= 8
    assert sorted(x for b in fn.batches for x in b) == sorted(f"q{i}" for i in range(50))


def test_a_lone_request_on_an_idle_batcher_does_not_wait_for_max_wait():
    fn = Recorder()

    async def main():
        batcher = MicroBatcher("t", fn, max_batch=64, max_wait_ms=2000)
        await batcher.start()
        start = time.monotonic()
        out = await batcher.submit(["a"])
        took = time.monotonic() - start
        await batcher.close(1.0)
        return out, took

    out, took = run(main)
    assert out == ["A"] and took < 0.5  # the old policy waited the whole 2 s


def test_batches_grow_while_one_runs_and_a_burst_still_arriving_is_gathered():
    fn = Recorder()
    fn.release.clear()

    async def main():
        batcher = MicroBatcher("t", fn, max_batch=4, max_wait_ms=2000)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(["first"]))
        await until(fn.started.is_set)
        later = []
        for i in range(6):  # one per loop turn, while "first" runs
            later.append(asyncio.ensure_future(batcher.submit([f"q{i}"])))
            await asyncio.sleep(0.001)
        await until(lambda: batcher.depth == 6)
        fn.release.set()
        out = await asyncio.gather(first, *later)
        burst = []
        for i in range(3):  # idle again: items arriving turn after turn join one batch
            burst.append(asyncio.ensure_future(batcher.submit([f"b{i}"])))
            await asyncio.sleep(0)
        await asyncio.gather(*burst)
        await batcher.close(1.0)
        return out

    out = run(main)
    assert out == [["FIRST"]] + [[f"Q{i}"] for i in range(6)]
    assert fn.batches[:3] == [["first"], ["q0", "q1", "q2", "q3"], ["q4", "q5"]]
    assert fn.batches[3:] == [["b0", "b1", "b2"]]


def test_the_token_bound_cuts_batches_and_a_huge_item_runs_alone():
    fn = Recorder()
    texts = ["aaaa", "bbb", "cc", "dddd", "e" * 15, "ff", "g"]

    async def main():
        batcher = MicroBatcher("t", fn, max_batch=64, max_tokens=10, size_of=len, max_wait_ms=50)
        await batcher.start()
        out = await asyncio.gather(*(batcher.submit([t]) for t in texts))
        await batcher.close(1.0)
        return out

    out = run(main)
    assert out == [[t.upper()] for t in texts]
    assert [x for b in fn.batches for x in b] == texts  # FIFO across batches
    for batch in fn.batches:
        assert sum(map(len, batch)) <= 10 or len(batch) == 1
    assert ["e" * 15] in fn.batches


def test_a_split_submission_comes_back_in_order():
    fn = Recorder()
    mine = [f"m{i}" for i in range(20)]

    async def main():
        batcher = MicroBatcher("t", fn, max_batch=6, max_wait_ms=20)
        await batcher.start()
        results = await asyncio.gather(
            batcher.submit(["x1"]), batcher.submit(mine), batcher.submit(["x2", "x3"])
        )
        await batcher.close(1.0)
        return results

    first, split, last = run(main)
    assert split == [m.upper() for m in mine] and first == ["X1"] and last == ["X2", "X3"]
    assert len(fn.batches) >= 4 and max(len(b) for b in fn.batches) <= 6


def test_a_full_queue_answers_overloaded_at_once_with_a_retry_estimate():
    fn = Recorder()
    fn.release.clear()

    async def main():
        batcher = MicroBatcher("skill:t", fn, max_batch=1, max_wait_ms=0, queue_size=4)
        await batcher.start()
        running = asyncio.ensure_future(batcher.submit(["a"]))
        await until(fn.started.is_set)  # "a" is out of the queue, its batch is running
        waiting = asyncio.ensure_future(batcher.submit(["b", "c", "d", "e"]))
        await until(lambda: batcher.depth == 4)
        with pytest.raises(Overloaded, match=r"queue of skill:t is full \(4 of 4") as info:
            await batcher.submit(["f"])
        fn.release.set()
        out = await asyncio.gather(running, waiting)
        # once batches were timed, the estimate comes from them
        estimate = batcher.retry_after_s(1)
        await batcher.close(1.0)
        return info.value.retry_after_s, out, estimate

    retry, out, estimate = run(main)
    assert retry > 0 and 0 < estimate < 5
    assert out == [["A"], ["B", "C", "D", "E"]]
    assert ["f"] not in fn.batches


def test_more_items_than_the_queue_holds_is_a_request_error_not_a_retry():
    async def main():
        batcher = MicroBatcher("t", Recorder(), queue_size=3)
        await batcher.start()
        with pytest.raises(DataError, match="at most 3 items per request"):
            await batcher.submit(["a", "b", "c", "d"])
        await batcher.close(1.0)

    run(main)


def test_a_deadline_passed_in_the_queue_raises_and_the_item_is_not_run():
    fn = Recorder()
    fn.release.clear()

    async def main():
        batcher = MicroBatcher("t", fn, max_batch=1, max_wait_ms=0)
        await batcher.start()
        blocker = asyncio.ensure_future(batcher.submit(["slow"]))
        await until(fn.started.is_set)
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="ran past its deadline"):
            await batcher.submit(["late"], deadline=time.monotonic() + 0.05)
        took = time.monotonic() - start
        assert batcher.depth == 0  # the expired item left the queue count at once
        fn.release.set()
        assert await blocker == ["SLOW"]
        assert await batcher.submit(["next"], deadline=time.monotonic() + 5) == ["NEXT"]
        with pytest.raises(DeadlineExceeded, match="before it was queued"):
            await batcher.submit(["past"], deadline=time.monotonic() - 1)
        await batcher.close(1.0)
        return took

    took = run(main)
    assert 0.04 <= took < 1.0  # answered at the deadline, not when the blocker finished
    assert fn.batches == [["slow"], ["next"]]


def test_a_request_whose_batch_has_begun_gets_its_results_past_its_deadline():
    """Its model call is made and paid for: a 504 would only make the client pay again."""
    fn = Recorder()
    fn.release.clear()

    async def main():
        batcher = MicroBatcher("t", fn, max_batch=1, max_wait_ms=0)
        await batcher.start()
        running = asyncio.ensure_future(batcher.submit(["slow"], deadline=time.monotonic() + 0.05))
        await until(fn.started.is_set)
        await asyncio.sleep(0.15)  # the deadline passes while the model runs
        assert not running.done()
        fn.release.set()
        assert await running == ["SLOW"]
        await batcher.close(1.0)

    run(main)


def test_a_split_request_whose_first_batch_began_gets_all_its_results_past_its_deadline():
    """Its later items run too: dropped, they would leave the caller waiting forever."""
    fn = Recorder()
    fn.release.clear()

    async def main():
        batcher = MicroBatcher("t", fn, max_batch=2, max_wait_ms=0)
        await batcher.start()
        items = ["a", "b", "c"]  # cut into [a, b] and [c]
        running = asyncio.ensure_future(batcher.submit(items, deadline=time.monotonic() + 0.05))
        await until(fn.started.is_set)
        await asyncio.sleep(0.15)  # the deadline passes while the first batch runs
        fn.release.set()
        out = await asyncio.wait_for(running, 2.0)
        depth = batcher.depth
        await batcher.close(1.0)
        return out, depth

    out, depth = run(main)
    assert out == ["A", "B", "C"]
    assert depth == 0
    assert fn.batches == [["a", "b"], ["c"]]


def test_close_finishes_queued_work_and_refuses_new_work():
    fn = Recorder()
    fn.release.clear()

    async def main():
        batcher = MicroBatcher("t", fn, max_batch=2, max_wait_ms=0)
        await batcher.start()
        queued = [asyncio.ensure_future(batcher.submit([f"q{i}"])) for i in range(5)]
        await until(fn.started.is_set)
        closing = asyncio.ensure_future(batcher.close(drain_timeout_s=5))
        await asyncio.sleep(0.01)
        with pytest.raises(ShuttingDown, match="shutting down"):
            await batcher.submit(["new"])
        fn.release.set()
        await closing
        return await asyncio.gather(*queued)

    assert run(main) == [[f"Q{i}"] for i in range(5)]
    assert sum(len(b) for b in fn.batches) == 5


def test_a_drain_timeout_fails_what_is_left_with_shutting_down():
    fn = Recorder()
    fn.release.clear()

    async def main():
        batcher = MicroBatcher("t", fn, max_batch=1, max_wait_ms=0)
        await batcher.start()
        futures = [asyncio.ensure_future(batcher.submit([f"q{i}"])) for i in range(3)]
        await until(fn.started.is_set)
        await batcher.close(drain_timeout_s=0.05)
        return await asyncio.gather(*futures, return_exceptions=True)

    try:
        outcomes = run(main)
    finally:
        fn.release.set()  # let the executor thread end
    assert all(isinstance(o, ShuttingDown) for o in outcomes), outcomes
    assert fn.batches == [["q0"]]


def test_a_drain_timeout_while_bad_input_is_isolated_fails_every_caller_left():
    hold = threading.Event()

    def fn(items: list[str]) -> list[str]:
        if "bad" in items:
            raise DataError("text 'bad' is unusable")
        if items == ["ok1"]:
            hold.wait(10)  # the re-run of the first caller alone outlasts the drain
        return [item.upper() for item in items]

    async def main():
        batcher = MicroBatcher("t", fn, max_batch=8, max_wait_ms=50)
        await batcher.start()
        futures = [asyncio.ensure_future(batcher.submit([t])) for t in ["ok1", "bad", "ok2"]]
        await until(lambda: batcher.batches_run == 0 and batcher.depth == 0)
        await asyncio.sleep(0.05)  # the batch failed on "bad"; "ok1" re-runs alone
        await batcher.close(drain_timeout_s=0.05)
        return await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 2)

    try:
        outcomes = run(main)
    finally:
        hold.set()
    assert all(isinstance(o, ShuttingDown) for o in outcomes), outcomes  # none left waiting


def test_an_error_in_fn_reaches_the_callers_of_that_batch_only():
    fn = Recorder(fail=lambda batch: RuntimeError("model broke") if "boom" in batch else None)

    async def main():
        batcher = MicroBatcher("t", fn, max_batch=2, max_wait_ms=50)
        await batcher.start()
        out = await asyncio.gather(
            *(batcher.submit([t]) for t in ["boom", "x", "y", "z"]), return_exceptions=True
        )
        await batcher.close(1.0)
        return out

    boom, x, y, z = run(main)
    assert fn.batches == [["boom", "x"], ["y", "z"]]
    assert isinstance(boom, RuntimeError) and x is boom  # the whole batch failed
    assert (y, z) == (["Y"], ["Z"])


def test_a_bad_input_fails_its_own_request_only():
    fn = Recorder(
        fail=lambda batch: DataError("text 'bad' is unusable") if "bad" in batch else None
    )

    async def main():
        batcher = MicroBatcher("t", fn, max_batch=8, max_wait_ms=50)
        await batcher.start()
        out = await asyncio.gather(
            batcher.submit(["ok1"]), batcher.submit(["bad", "also-mine"]), batcher.submit(["ok2"]),
            return_exceptions=True,
        )  # fmt: skip
        await batcher.close(1.0)
        return out

    ok1, bad, ok2 = run(main)
    assert (ok1, ok2) == (["OK1"], ["OK2"])
    assert isinstance(bad, DataError) and "unusable" in str(bad)
    assert fn.batches[0] == ["ok1", "bad", "also-mine", "ok2"]  # then one re-run per caller
    assert fn.batches[1:] == [["ok1"], ["bad", "also-mine"], ["ok2"]]


def test_a_wrong_number_of_outputs_is_reported_to_the_callers():
    async def main():
        batcher = MicroBatcher("t", lambda items: ["only one"], max_wait_ms=20)
        await batcher.start()
        with pytest.raises(ServeError, match="returned 1 outputs for 2 items"):
            await batcher.submit(["a", "b"])
        await batcher.close(1.0)

    run(main)


def test_fn_runs_in_the_executor_never_on_the_event_loop_thread():
    fn = Recorder()
    seen: list[tuple[int, float]] = []

    async def main():
        batcher = MicroBatcher("t", fn, max_wait_ms=5, on_batch=lambda n, s: seen.append((n, s)))
        await batcher.start()
        await asyncio.gather(*(batcher.submit([str(i)]) for i in range(10)))
        await batcher.close(1.0)
        return threading.get_ident()

    loop_thread = run(main)
    assert fn.threads and loop_thread not in fn.threads
    assert sum(n for n, _ in seen) == 10 and all(s >= 0 for _, s in seen)


def test_a_cancelled_caller_s_items_are_not_run():
    fn = Recorder()
    fn.release.clear()

    async def main():
        batcher = MicroBatcher("t", fn, max_batch=1, max_wait_ms=0)
        await batcher.start()
        blocker = asyncio.ensure_future(batcher.submit(["first"]))
        await until(fn.started.is_set)
        gone = asyncio.ensure_future(batcher.submit(["gone"]))
        await until(lambda: batcher.depth == 1)
        gone.cancel()
        await asyncio.sleep(0)
        assert batcher.depth == 0
        fn.release.set()
        await blocker
        await batcher.submit(["after"])
        await batcher.close(1.0)

    run(main)
    assert fn.batches == [["first"], ["after"]]


def test_misuse_is_reported_with_the_fix():
    with pytest.raises(ConfigError, match="'max_batch' parameter of MicroBatcher 't' must be"):
        MicroBatcher("t", Recorder(), max_batch=0)
    with pytest.raises(ConfigError, match="max_wait_ms"):
        MicroBatcher("t", Recorder(), max_wait_ms=-1)

    async def main():
        batcher = MicroBatcher("t", Recorder())
        with pytest.raises(ServeError, match=r"await batcher.start\(\)"):
            await batcher.submit(["a"])
        await batcher.start()
        assert await batcher.submit([]) == []
        await batcher.close(1.0)

    run(main)
