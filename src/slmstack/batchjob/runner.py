"""What every worker of a batch job runs, whatever the engine: rows in, outcomes out.

A worker loads the workflow once (:class:`RowRunner`), then runs batch after batch
through ``Workflow.run_batch``, so that each skill predicts once per batch. A batch that
raises is run again row by row, so that the one bad row goes to the errors file with its
reason and the others still run; the LLM answers the failed batch paid for are taken by
that retry rather than asked again (see :mod:`slmstack.workflows.batching`). Errors no
row causes (a missing package, an inbox that cannot be opened) stop the job at once, and
so do :data:`FAILURES_IN_A_ROW` failed rows with no success between them (a revoked API
key, an endpoint that stays down): the job stops with the last reason rather than filing
every remaining row as an error, and the rows done so far are kept for the resumed run.
Each row runs with an idempotency key made of the job (its output file), the row id and
the text's digest: a batch run a second time (a worker killed after it filed its
packets, a resumed job) files no second inbox packet and no second ledger rows. The
ledger buffers its rows, so the worker flushes it before it hands a batch back: once a
row is in the output file its ledger rows are in the database.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmstack.batchjob.inputs import Row
from slmstack.batchjob.sink import Outcome
from slmstack.errors import InboxError, JobStopped, MissingDependencyError
from slmstack.heap import freeze_loaded
from slmstack.models.onnx_runtime import THREADS_ENV as ONNX_THREADS_ENV
from slmstack.workflows import Workflow, load_workflow

# The ledger's request_id column holds 200 characters (see slmstack.costs.ledger).
_MAX_KEY = 200
# Failed rows in a row, with no success between them, after which a worker stops the job.
FAILURES_IN_A_ROW = 20
# Errors that say nothing about the row: the job stops on the first.
_SYSTEMIC = (MissingDependencyError, InboxError)


@dataclass(frozen=True)
class JobSpec:
    """What a worker needs to rebuild the job's workflow: plain values, so it pickles.

    Attributes:
        workflow: the workflow YAML file (on a cluster: a path every node can read).
        job: the key prefix of the job's rows (see :func:`job_id`).
        inbox: database URL overriding the file's ``inbox:``.
        ledger: database URL overriding the file's ``ledger:``.
        trace: write each row's full trace.
        threads: torch and onnxruntime threads per worker (``None``: their defaults;
            ``SLMSTACK_ONNX_THREADS``, when set, still decides onnxruntime's).
    """

    workflow: Path
    job: str
    inbox: str | None = None
    ledger: str | None = None
    trace: bool = False
    threads: int | None = None

    def load(self) -> Workflow:
        """The workflow, with the job's inbox and ledger (then ``gc.freeze``, see heap)."""
        workflow = load_workflow(self.workflow, inbox=self.inbox, ledger=self.ledger)
        freeze_loaded()
        return workflow


def job_id(output: Path) -> str:
    """The key prefix of a job: a digest of its output file's absolute path."""
    return hashlib.sha256(str(output.resolve()).encode()).hexdigest()[:12]


def row_key(job: str, row: Row) -> str:
    """The idempotency key of one row: the job, the row id and the text's digest."""
    digest = hashlib.sha256(row.text.encode("utf-8")).hexdigest()[:16]
    key = f"batch:{job}:{row.id}:{digest}"
    if len(key) > _MAX_KEY:  # a long document path: its digest stands in for it
        key = f"batch:{job}:{hashlib.sha256(row.id.encode()).hexdigest()[:32]}:{digest}"
    return key


def set_torch_threads(n: int | None) -> None:
    """``torch.set_num_threads(n)`` when the workflow's skills imported torch."""
    if n is not None and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


class RowRunner:
    """Runs batches of rows through one workflow, loaded once.

    Args:
        spec: the job.
        load: builds the workflow (default: ``spec.load``); tests pass a double.

    Example:
        >>> runner = RowRunner(JobSpec(Path("wf.yaml"), job="j1"))  # doctest: +SKIP
        >>> [o.ok for o in runner([Row("a.jsonl:1", "hello")])]  # doctest: +SKIP
        [True]
    """

    def __init__(self, spec: JobSpec, load: Callable[[], Workflow] | None = None):
        self.spec = spec
        if spec.threads is not None:  # exported skills size their sessions as they load
            os.environ.setdefault(ONNX_THREADS_ENV, str(spec.threads))
        self.workflow = (load or spec.load)()
        set_torch_threads(spec.threads)
        self.failed_in_a_row = 0

    def __call__(self, rows: Sequence[Row]) -> list[Outcome]:
        """One outcome per row, in order: its result line, or its error line."""
        done: dict[str, Outcome] = {
            r.id: self._failed(r, "input", r.error) for r in rows if r.error
        }
        good = [r for r in rows if not r.error]
        if good:
            keys = [row_key(self.spec.job, r) for r in good]
            try:
                results = self.workflow.run_batch([r.text for r in good], keys=keys)
            except _SYSTEMIC:
                raise
            except Exception:
                # Some row sank the batch: run each alone, so only that row fails.
                for row, key in zip(good, keys, strict=True):
                    done[row.id] = self._one(row, key)
            else:
                self.failed_in_a_row = 0
                for row, result in zip(good, results, strict=True):
                    done[row.id] = self._ok(row, result.to_dict(trace=self.spec.trace))
        ledger = self.workflow.ledger
        if ledger is not None:
            ledger.flush()  # before the rows are handed back (see the module docstring)
        return [done[r.id] for r in rows]

    def _one(self, row: Row, key: str) -> Outcome:
        try:
            result = self.workflow.run(row.text, key=key)
        except _SYSTEMIC:
            raise
        except Exception as exc:  # reported in the errors file, with its type
            why = f"{type(exc).__name__}: {exc}"
            self.failed_in_a_row += 1
            if self.failed_in_a_row >= FAILURES_IN_A_ROW:
                raise JobStopped(
                    f"{self.failed_in_a_row} rows failed in a row, the last ({row.id}) with "
                    f"{why}. This looks like a problem with the workflow or a service, not "
                    "with the rows: fix it and run the same command again to resume (the "
                    "rows done so far are kept; a backend's options may change, but a "
                    "workflow whose steps or skills changed needs --restart)"
                ) from exc
            return self._failed(row, "workflow", why)
        self.failed_in_a_row = 0
        return self._ok(row, result.to_dict(trace=self.spec.trace))

    @staticmethod
    def _ok(row: Row, result: dict[str, Any]) -> Outcome:
        line = json.dumps({"id": row.id, **result}, ensure_ascii=False)
        return Outcome(row.id, True, line)

    @staticmethod
    def _failed(row: Row, stage: str, why: str) -> Outcome:
        record = {"id": row.id, "input": row.text, "stage": stage, "error": why}
        return Outcome(row.id, False, json.dumps(record, ensure_ascii=False))
