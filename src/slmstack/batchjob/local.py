"""The ``local`` engine: a pool of worker processes on this machine.

Each worker process loads the workflow once (the pool's initializer) and then runs batch
after batch through ``Workflow.run_batch``. Processes rather than threads, because a
skill's Python code holds the GIL between its torch calls; ``spawn`` rather than ``fork``,
because a forked child of a process whose torch already started its thread pool can
hang. At most two batches per worker are in flight, so memory stays bounded however
long the input. A worker that dies (killed, out of memory) breaks the pool: the engine
starts a new pool and runs the batches that were in flight again (their rows are keyed,
so nothing is filed twice), up to ``max_restarts`` times.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from slmstack.batchjob.base import Engine, engines
from slmstack.batchjob.inputs import Row
from slmstack.batchjob.runner import JobSpec, RowRunner
from slmstack.batchjob.sink import Outcome
from slmstack.errors import ConfigError, SlmstackError

_runner: RowRunner | None = None  # the workflow of this worker process


def _start(spec: JobSpec) -> None:
    """Pool initializer: load the workflow once per process."""
    global _runner
    # Ctrl-C goes to the whole process group; the parent decides, the workers finish.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _runner = RowRunner(spec)


def _run(rows: list[Row]) -> list[Outcome]:
    assert _runner is not None, "the pool initializer did not run"
    return _runner(rows)


class LocalEngine:
    """Batches on ``workers`` processes of this machine.

    Args:
        workers: worker processes, each with its own copy of the models.
        max_restarts: new pools started after a worker died, before the job fails.
    """

    def __init__(self, *, workers: int = 1, max_restarts: int = 3):
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1; got {workers}")
        self.workers = workers
        self.max_restarts = max_restarts

    def map(self, spec: JobSpec, rows: Sequence[Row], batch_size: int) -> Iterator[list[Outcome]]:
        """Yield each batch's outcomes as it finishes (see the module docstring)."""
        todo = [list(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]
        todo.reverse()  # popped from the end: input order
        restarts = 0
        while todo:
            lost = yield from self._pool(spec, todo)
            if not lost:
                return
            restarts += 1
            if restarts > self.max_restarts:
                raise SlmstackError(
                    f"a worker process died {restarts} times (killed, or out of memory?); "
                    "see its error above. Run the same command again to resume, with "
                    "fewer --workers or a smaller --batch-size if memory is short"
                )
            todo.extend(lost)

    def _pool(
        self, spec: JobSpec, todo: list[list[Row]]
    ) -> Generator[list[Outcome], None, list[list[Row]]]:
        """Run ``todo`` on one pool; return the batches lost when a worker died."""
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=_start, initargs=(spec,)
        )
        running: dict[Future[list[Outcome]], list[Row]] = {}
        try:
            while todo or running:
                while todo and len(running) < 2 * self.workers:
                    batch = todo.pop()
                    running[pool.submit(_run, batch)] = batch
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    batch = running.pop(future)
                    try:
                        outcomes = future.result()
                    except BrokenProcessPool:
                        lost = [batch, *running.values()]
                        running.clear()
                        return lost
                    yield outcomes
            return []
        finally:
            # On an error or Ctrl-C, drop queued batches; running ones finish their batch.
            pool.shutdown(wait=not running, cancel_futures=True)


def _local(*, workers: int, address: str | None) -> Engine:
    if address is not None:
        raise ConfigError("--ray-address goes with --engine ray; the local engine has no cluster")
    return LocalEngine(workers=workers)


engines.register("local")(_local)
