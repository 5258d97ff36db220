"""Checks that ``Workflow.run_batch`` gave, for every text, what ``Workflow.run`` gives.

Shared by the run_batch test files: results, inbox packets and ledger rows compared
field by field, timing fields aside (a batch's time is shared out among its texts).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pytest

from slmstack.costs import Ledger
from slmstack.workflows import (
    Inbox,
    Result,
    Workflow,
)


def no_latency(value: Any) -> Any:
    """``value`` with every ``latency_ms`` left out (a batch shares its time out)."""
    if isinstance(value, dict):
        return {k: no_latency(v) for k, v in value.items() if k != "latency_ms"}
    if isinstance(value, list):
        return [no_latency(v) for v in value]
    return value


# In fp32 a padded batch moves an encoder's scores by about 1e-7. In bf16 (8 significant
# bits, about 4e-3 relative) a batch can round differently from a lone text: on an AMX CPU
# the support desk's confidences moved by up to 1.7e-4, on an AMD EPYC with avx512_bf16 by
# under 1e-5 (tests/test_workflow_run_batch_examples.py).
FP32_TOL = 1e-5
BF16_TOL = 5e-3
_NUMBER = re.compile(r"-?\d+\.\d+")


def _same_text(got: str, want: str, tol: float) -> bool:
    """Equal, or equal but for decimal numbers within ``tol`` (plus their printed rounding)."""
    if got == want:
        return True
    if _NUMBER.split(got) != _NUMBER.split(want):
        return False
    pairs = zip(_NUMBER.findall(got), _NUMBER.findall(want), strict=True)
    return all(abs(float(g) - float(w)) <= tol + 10.0 ** -len(w.split(".")[1]) for g, w in pairs)


def assert_close(got: Any, want: Any, where: str = "", tol: float = FP32_TOL) -> None:
    """Equal, with floats (and decimals printed in strings) to ``tol``."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), where
        for key in want:
            assert_close(got[key], want[key], f"{where}.{key}", tol)
    elif isinstance(want, list | tuple):
        assert isinstance(got, list | tuple) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_close(g, w, f"{where}[{i}]", tol)
    elif isinstance(want, float) and not isinstance(want, bool):
        assert got == pytest.approx(want, abs=tol), where
    elif isinstance(want, str) and tol > FP32_TOL:
        assert isinstance(got, str) and _same_text(got, want, tol), f"{where}: {got!r} != {want!r}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def assert_same_results(batch: list[Result], alone: list[Result], tol: float = FP32_TOL) -> None:
    """Outputs, status, escalation, route, decisions and trace shape match, per text."""
    assert len(batch) == len(alone)
    for i, (b, a) in enumerate(zip(batch, alone, strict=True)):
        where = f"text {i} ({a.input!r})"
        assert (b.input, b.status, b.route) == (a.input, a.status, a.route), where
        if a.output.text is not None or a.output.label is not None:
            assert_close(b.answer, a.answer, where, tol)  # else it prints data: compared below
        assert b.escalation == a.escalation, where  # reason, why and packet id
        decisions = [[t.decision for t in root.walk()] for root in b.trace]
        want = [[t.decision for t in root.walk()] for root in a.trace]
        assert_close(
            [[d and d.to_dict() for d in ds] for ds in decisions],
            [[d and d.to_dict() for d in ds] for ds in want],
            f"{where} decisions",
            tol,
        )
        b_view, a_view = no_latency(b.to_dict()), no_latency(a.to_dict())
        del b_view["answer"], a_view["answer"]  # floats printed in full, for data outputs
        assert_close(b_view, a_view, where, tol)


def assert_same_packets(batch: Inbox, alone: Inbox, tol: float = FP32_TOL) -> None:
    """The same packets (one per escalated text, same keys), in the same order."""
    got, want = batch.list(), alone.list()
    assert len(got) == len(want)
    for b, a in zip(got, want, strict=True):
        drop = {"created_at", "trace"}
        b_dict = {k: v for k, v in b.to_dict().items() if k not in drop}
        a_dict = {k: v for k, v in a.to_dict().items() if k not in drop}
        assert_close(b_dict, a_dict, f"packet {a.id}", tol)
        assert_close(no_latency(b.to_dict()["trace"]), no_latency(a.to_dict()["trace"]), "", tol)


# Timing fields: a batch's time is shared out, so these differ (tokens and decisions do not).
_TIMED = {"at", "latency_ms", "compute_s"}


def assert_same_ledger(batch: Ledger, alone: Ledger, tol: float = FP32_TOL) -> None:
    """The same rows per request: steps, models, tokens, decisions, per-token costs."""

    def view(ledger: Ledger) -> list[dict[str, Any]]:
        out = []
        for row in ledger.rows():
            data = {k: v for k, v in vars(row).items() if k not in _TIMED}
            if row.machine is not None or row.kind == "run":
                data.pop("cost_nusd")  # priced by time (the run: partly): a share of the batch
            out.append(data)
        return sorted(out, key=lambda r: (r["request_id"], r["path"]))

    got, want = view(batch), view(alone)
    assert got
    if tol > FP32_TOL:
        assert_close(got, want, "ledger", tol)
    else:
        assert got == want


def run_both(
    make: Any, texts: Sequence[str], keys: Sequence[str]
) -> tuple[list[Result], list[Result], Workflow, Workflow]:
    """Run ``texts`` one at a time on one workflow and as a batch on another."""
    alone_wf, batch_wf = make("alone"), make("batch")
    alone = [alone_wf.run(t, key=k) for t, k in zip(texts, keys, strict=True)]
    batch = batch_wf.run_batch(texts, keys=keys)
    return batch, alone, batch_wf, alone_wf
