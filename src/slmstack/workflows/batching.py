"""Running a workflow on a batch of texts: each step once per batch, not once per text.

The method: every text gets its own :class:`RunContext`, exactly as in ``Workflow.run``,
and the steps run over the list of contexts (``Step.run_batch``). A skill step calls
``predict`` once with the texts that reach it; a route labels the batch once and runs
each branch once on the texts that took it; a cascade sends on only the texts its tier
did not settle; parallel branches each run once on the whole (sub)batch; a text that
hands off stops, as it would alone. The per-text decisions are made by the same code as
in ``run``, so a batch gives each text the outputs, decisions and escalations it would
get alone. The engine then files the inbox packets (in one transaction) and ledger rows
in input order.

Why: a small encoder's cost is mostly fixed per call (Python, tokeniser and torch
dispatch), so one forward pass over 64 texts costs far less than 64 passes over one
(see ``bench/workflow_batch.py``). Grouping by branch keeps every call a batch without
running any skill on a text that would not reach it, so nothing is computed, billed or
escalated that ``run`` would not.

What it costs: a batch has one wall time, so each text's latency is a share of it (see
``Step.run_batch``), and a batch that fails fails whole: no packet is filed and no row
recorded for any of its texts (a file run redoes the chunk; keys keep that idempotent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from slmstack.errors import DataError
from slmstack.workflows.base import RunContext, Runtime, Step
from slmstack.workflows.steps.sequence import run_steps_batch
from slmstack.workflows.trace import Result, StepTrace

Run = tuple[RunContext, list[StepTrace]]
"""One text's context after the run and its top-level traces."""


def check_batch(
    texts: Sequence[str], keys: Sequence[str | None] | None, what: str = "key"
) -> list[str | None]:
    """Check the texts (each a ``str``) and return one ``what`` (or ``None``) per text."""
    if isinstance(texts, str):
        raise DataError(
            "run_batch takes a list of texts and got one str; pass [text], or call run(text)"
        )
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(f"a workflow runs on texts (str); item {i} is a {type(text).__name__}")
    if keys is None:
        return [None] * len(texts)
    if isinstance(keys, str) or len(keys) != len(texts):
        got = "one str" if isinstance(keys, str) else f"{len(keys)} {what}s"
        raise DataError(
            f"{what}s must hold one {what} (or None) per text: {len(texts)} texts, {got}"
        )
    return list(keys)


def run_texts(steps: Sequence[Step], runtime: Runtime, texts: Sequence[str]) -> list[Run | None]:
    """Run ``steps`` on the batch; ``None`` for an empty text, on which nothing runs."""
    live = [i for i, text in enumerate(texts) if text.strip()]
    ctxs = [RunContext(texts[i], runtime) for i in live]
    out: list[Run | None] = [None] * len(texts)
    for i, ctx, traces in zip(live, ctxs, run_steps_batch(steps, ctxs, "steps"), strict=True):
        out[i] = (ctx, traces)
    return out


def share_run_latency(results: Sequence[Result], batch_ms: float) -> list[Result]:
    """Each result's latency: its steps' latencies plus an equal share of the rest.

    The rest is the batch's time outside the steps (building contexts, filing packets),
    so that the results' latencies add up to the batch's wall time.
    """
    if not results:
        return []
    steps_ms = [sum(t.latency_ms for t in r.trace) for r in results]
    overhead = max(0.0, batch_ms - sum(steps_ms)) / len(results)
    return [replace(r, latency_ms=ms + overhead) for r, ms in zip(results, steps_ms, strict=True)]


__all__ = ["Run", "check_batch", "run_texts", "share_run_latency"]
