"""Batch jobs: a workflow over a large set of inputs, on a local process pool or on Ray.

Example:
    >>> from slmstack.batchjob import run_job
    >>> summary = run_job("wf.yaml", "tickets/", "out.jsonl", engine="ray", workers=4)
    ... # doctest: +SKIP
    >>> summary.processed, summary.failed  # doctest: +SKIP
"""

from slmstack.batchjob.base import Engine, engines
from slmstack.batchjob.inputs import Row, read_rows
from slmstack.batchjob.job import JobSummary, run_job
from slmstack.batchjob.local import LocalEngine
from slmstack.batchjob.ray_engine import RayEngine
from slmstack.batchjob.runner import JobSpec, RowRunner, row_key
from slmstack.batchjob.sink import Outcome, Sink, errors_path_for

__all__ = [
    "Engine",
    "JobSpec",
    "JobSummary",
    "LocalEngine",
    "Outcome",
    "RayEngine",
    "Row",
    "RowRunner",
    "Sink",
    "engines",
    "errors_path_for",
    "read_rows",
    "row_key",
    "run_job",
]
