"""What ``Step.run`` and ``Step.run_batch`` do around a step's own work.

They time it, share a batch's wall time out among its texts, and note on an error which
step raised it. A note (PEP 678) keeps the error's type, so callers still catch a
``BackendError`` as one; tracebacks show it, and so does the command line's error line.
Without it, an error from a parallel branch (raised on a pool thread) or deep in a block
would not say where it arose.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from slmstack.workflows.trace import StepTrace

if TYPE_CHECKING:
    from slmstack.workflows.base import RunContext, Step

_FAILED_IN = "in step "


def name_failure(exc: BaseException, step: Step, path: str) -> None:
    """Note on ``exc`` which step raised it, once: the innermost step, the one that failed."""
    if not any(n.startswith(_FAILED_IN) for n in getattr(exc, "__notes__", ())):
        exc.add_note(f"{_FAILED_IN}{step.name!r} at {path}")


def timed_execute(step: Step, ctx: RunContext, path: str) -> StepTrace:
    """``step.execute(ctx, path)``, its trace's ``latency_ms`` set to its wall time."""
    start = time.perf_counter()
    try:
        trace = step.execute(ctx, path)
    except Exception as exc:
        name_failure(exc, step, path)
        raise
    trace.latency_ms = (time.perf_counter() - start) * 1000
    return trace


def share_latency(traces: Sequence[StepTrace], batch_ms: float, *, concurrent: bool) -> None:
    """Set each trace's ``latency_ms`` to its share of ``batch_ms`` (see ``Step.run_batch``)."""
    own = [
        t.latency_ms  # a leaf: what its step measured for this text alone (0: one batch call)
        if not t.children
        else max(c.latency_ms for c in t.children)
        if concurrent
        else sum(c.latency_ms for c in t.children)
        for t in traces
    ]
    overhead = max(0.0, batch_ms - sum(own)) / len(traces)
    for trace, children_ms in zip(traces, own, strict=True):
        trace.latency_ms = children_ms + overhead


__all__ = ["name_failure", "share_latency", "timed_execute"]
