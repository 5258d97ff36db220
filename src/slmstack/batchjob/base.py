"""The engine contract of batch jobs, and the registry ``--engine`` names resolve in.

An engine takes the rows still to do and yields their outcomes, batch by batch, in any
order: the job writes each batch as it arrives, so the order of the output file is the
order batches finished (each line carries its row id). An engine may run a batch twice
(a retried worker): rows are keyed, so the second run adds nothing, and the job writes
each row once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from slmstack.batchjob.inputs import Row
from slmstack.batchjob.runner import JobSpec
from slmstack.batchjob.sink import Outcome
from slmstack.registry import Registry


class Engine(Protocol):
    """Runs a job's rows on some workers."""

    workers: int

    def map(self, spec: JobSpec, rows: Sequence[Row], batch_size: int) -> Iterator[list[Outcome]]:
        """Run ``rows`` in batches of ``batch_size``; yield each batch's outcomes when done."""
        ...


class EngineFactory(Protocol):
    """Builds an engine from the job's options."""

    def __call__(self, *, workers: int, address: str | None) -> Engine:
        """An engine with ``workers`` workers (``address``: a cluster, where it applies)."""
        ...


engines: Registry[EngineFactory] = Registry("batch engine")
"""Engines by their ``--engine`` name: ``local`` and ``ray``."""
