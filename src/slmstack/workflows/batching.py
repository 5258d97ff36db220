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
The LLM calls it made before it failed were paid, though: the workflow keeps their
answers (:class:`KeptAnswers`), and running those texts again (``run`` row by row, as
the file runners do, or ``run_batch``) takes each kept answer once instead of asking
again, and records it then, so an escalation that times out on text 40 of 64 re-pays
none of the 39 answered. A kept answer's trace and ledger row carry its tokens but the
time of the replay, not of the call. A batch that succeeds drops what is left.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace

from slmstack.backends.base import Backend, Completion, CompletionRequest
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


class KeptAnswers:
    """The LLM answers a failed batch paid for, kept for the texts' next run.

    :meth:`wrap` gives the backends the steps call: each answer given during
    :meth:`batch` is kept when the batch fails; a request asked again (the same messages
    and options) takes a kept answer, once, instead of calling the backend.

    Example:
        >>> kept = KeptAnswers()
        >>> backends = kept.wrap({"llm": llm})  # doctest: +SKIP
        >>> with kept.batch():  # doctest: +SKIP
        ...     run_the_batch(backends)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[str, list[Completion]] = {}
        self._given: dict[str, list[Completion]] | None = None  # in a batch: its answers

    def wrap(self, backends: Mapping[str, Backend]) -> dict[str, Backend]:
        """``backends``, each answering from the kept answers first."""
        return {name: _Keeping(backend, self) for name, backend in backends.items()}

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Keep the answers given inside when it raises; drop every kept one when not."""
        with self._lock:
            self._given = {}
        try:
            yield
        except BaseException:
            with self._lock:
                for key, answers in (self._given or {}).items():
                    self._kept.setdefault(key, []).extend(answers)
                self._given = None
            raise
        with self._lock:
            self._kept.clear()
            self._given = None

    def complete(self, backend: Backend, request: CompletionRequest) -> Completion:
        """A kept answer to ``request``, or ``backend``'s (kept if the batch fails)."""
        key = repr(request)
        with self._lock:
            kept = self._kept.get(key)
            answer = kept.pop(0) if kept else None
        if answer is None:
            answer = backend.complete(request)
        with self._lock:
            if self._given is not None:
                self._given.setdefault(key, []).append(answer)
        return answer


class _Keeping(Backend):
    """A workflow's backend, answering from its :class:`KeptAnswers` first."""

    def __init__(self, inner: Backend, kept: KeptAnswers):
        self.inner = inner
        self.kept = kept
        self.name = inner.name
        self.model_sha256 = inner.model_sha256

    def complete(self, request: CompletionRequest) -> Completion:
        """A kept answer, or the backend's."""
        return self.kept.complete(self.inner, request)

    def count_tokens(self, text: str) -> int:
        """The backend's count."""
        return self.inner.count_tokens(text)


__all__ = ["KeptAnswers", "Run", "check_batch", "run_texts", "share_run_latency"]
