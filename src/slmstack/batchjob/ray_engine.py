"""The ``ray`` engine: Ray Data ``map_batches`` over a pool of actors.

The method: the rows still to do become a Ray dataset (one block per batch), mapped by a
stateful callable class, :class:`_WorkflowActor`, in an actor pool of ``workers`` actors:
each actor loads the workflow once in its constructor and then runs batch after batch
through ``Workflow.run_batch``, as a local worker process does. Ray Data streams the
outcomes back to the driver, which writes them as they come. Ray restarts an actor that
dies and runs its batch again (Ray Data's defaults for actor pools: ``max_restarts=-1``,
``max_task_retries=-1``); the rows are keyed, so the batch files nothing twice.

Ray is imported only here, when the engine starts: ``pip install slmstack`` stays light.
Without ``--ray-address`` the engine starts a Ray instance for this job with no dashboard
(Ray's dashboard and job API run code for whoever can reach them; its GCS and raylet
still listen widely, see the README's "Securing a Ray cluster"), and stops it at the end.
With an address it connects to that cluster: every node
then needs slmstack installed and the workflow file, its skill folders and its SQLite
inbox and ledger at the same paths (a shared file system), or a PostgreSQL inbox and
ledger that every node can reach.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator, Sequence
from typing import Any

from slmstack.batchjob.base import Engine, engines
from slmstack.batchjob.inputs import Row
from slmstack.batchjob.runner import JobSpec, RowRunner
from slmstack.batchjob.sink import Outcome
from slmstack.errors import ConfigError, MissingDependencyError, SlmstackError
from slmstack.ray_cluster import connect


class _WorkflowActor:
    """The stateful callable Ray Data runs in each actor: one workflow per actor."""

    def __init__(self, spec: JobSpec):
        self.runner: RowRunner | None = None
        self.failed: SlmstackError | None = None
        try:
            self.runner = RowRunner(spec)
        except SlmstackError as exc:  # a node without the file or a package the skills need
            # Raised by the first batch instead: Ray hands the driver a task's error as
            # itself, but a constructor's only as text inside ActorDiedError.
            self.failed = exc

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        if self.runner is None:
            raise self.failed or SlmstackError("the workflow did not load in this Ray actor")

        rows = [
            Row(str(i), str(t), str(e))
            for i, t, e in zip(batch["id"], batch["text"], batch["error"], strict=True)
        ]
        outcomes = self.runner(rows)
        return {
            "id": np.array([o.id for o in outcomes], dtype=object),
            "ok": np.array([o.ok for o in outcomes], dtype=bool),
            "line": np.array([o.line for o in outcomes], dtype=object),
        }


def _block(rows: Sequence[Row]) -> Any:
    import pyarrow as pa

    return pa.table(
        {
            "id": [r.id for r in rows],
            "text": [r.text for r in rows],
            "error": [r.error for r in rows],
        }
    )


def _batches_per_block(rows: int, batch_size: int, workers: int) -> int:
    """Batches per Ray Data block: up to 8, keeping at least 4 blocks per worker.

    Each block is one Ray task, and Ray Data's per-task cost is CPU the workers need. On
    2 cores, over 20,000 rows in batches of 64 with a 30 ms stand-in model, one batch per
    block cost the driver and Ray's processes 11.6 CPU-s (17.1 s wall), eight per block
    7.2 CPU-s (11.8 s). Four blocks per worker keep the actors evenly loaded at the end.
    """
    batches = -(-rows // batch_size)
    return max(1, min(8, batches // (4 * workers)))


def _own_error(exc: BaseException) -> SlmstackError | None:
    """The slmstack error a worker raised, out of Ray's wrappers (``None``: none)."""
    seen: set[int] = set()
    found: BaseException | None = exc
    while found is not None and id(found) not in seen:
        seen.add(id(found))
        # RayTaskError holds what the task raised as `cause`; the RayTaskError itself may
        # subclass it too, but its message is the worker's whole stack trace.
        cause = getattr(found, "cause", None)
        if isinstance(cause, BaseException):
            found = cause
        elif isinstance(found, SlmstackError):
            return found
        else:
            found = found.__cause__
    return None


def _drop_frames(error: BaseException) -> None:
    """Clear the tracebacks along ``error``'s chain: their frames hold the failed job."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        e.__traceback__ = None
        todo += [e.__cause__, e.__context__]


def _ray() -> Any:
    try:
        import ray
        import ray.data  # Ray Data is a separate extra of ray
    except ImportError as exc:
        raise MissingDependencyError("ray[data]", "ray", "--engine ray") from exc
    return ray


class RayEngine:
    """Batches on an actor pool of ``workers`` Ray actors.

    Args:
        workers: actors in the pool, each with its own copy of the models.
        address: a Ray cluster (``ray://HOST:10001`` or ``HOST:6379``); ``None`` starts a
            local instance for the job. A Ray instance already started in
            this process (``ray.init``) is used as it is.

    Each actor reserves ``spec.threads`` CPUs (one when unset), the torch and onnxruntime
    threads it runs.
    """

    def __init__(self, *, workers: int = 1, address: str | None = None):
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1; got {workers}")
        self.workers = workers
        self.address = address
        self._ray = _ray()  # fail now, before the inputs are read and the models loaded

    def map(self, spec: JobSpec, rows: Sequence[Row], batch_size: int) -> Iterator[list[Outcome]]:
        """Yield each batch's outcomes as Ray Data streams them back."""
        if not rows:
            return
        ray = self._ray
        cpus = spec.threads or 1
        started = connect(ray, self.address, num_cpus=max(os.cpu_count() or 1, self.workers * cpus))
        try:
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False  # the job shows its own
            context.print_on_execution_start = False
            # A worker's own error (JobStopped, a missing package) reaches the driver as
            # itself, inside Ray's RayTaskError, rather than as a UserCodeException.
            context.raise_original_map_exception = True
            # Blocks of whole batches, cut where the local engine cuts: map_batches slices
            # each block from its start, so each actor call gets the same rows as a local
            # worker's, and so the same padding and every float of the outputs.
            span = batch_size * _batches_per_block(len(rows), batch_size, self.workers)
            blocks = [_block(rows[i : i + span]) for i in range(0, len(rows), span)]
            dataset = ray.data.from_arrow(blocks).map_batches(
                _WorkflowActor,
                fn_constructor_args=(spec,),
                batch_size=batch_size,
                batch_format="numpy",
                # no more actors than blocks: an idle one would still load every model
                compute=ray.data.ActorPoolStrategy(size=min(self.workers, len(blocks))),
                num_cpus=cpus,
            )
            batches = iter(dataset.iter_batches(batch_size=None, batch_format="numpy"))
            failure: SlmstackError | None = None
            try:
                for batch in batches:
                    yield [
                        Outcome(str(i), bool(ok), str(line))
                        for i, ok, line in zip(batch["id"], batch["ok"], batch["line"], strict=True)
                    ]
            except ray.exceptions.RayError as exc:
                # The worker's own error (JobStopped, a missing package) as the local engine
                # raises it, with its advice; else Ray's, which names the failure.
                failure = _own_error(exc) or SlmstackError(
                    f"the Ray job failed: {exc}\nRun the same command again to resume; rows "
                    "already written are skipped"
                )
            if failure is not None:
                # Raised outside the except, and without this frame's dataset: Ray's error
                # and the dataset hold the job's actors, and an error a caller keeps (a
                # notebook keeps the last) would keep their CPUs, so that the next job on
                # a Ray of the caller's own waits for CPUs forever. The failed executor
                # also sits in a reference cycle, reached from the error's tracebacks,
                # that holds the actors until the garbage collector next runs (over a
                # minute here): the tracebacks are dropped and the cycle collected now,
                # before the next job asks for the CPUs.
                del dataset, batches
                _drop_frames(failure)
                gc.collect()
                raise failure
        finally:
            if started:
                ray.shutdown()


def _ray_engine(*, workers: int, address: str | None) -> Engine:
    return RayEngine(workers=workers, address=address)


engines.register("ray")(_ray_engine)
