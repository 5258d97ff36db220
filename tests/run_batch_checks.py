"""Checks that ``Workflow.run_batch`` gave, for every text, what ``Workflow.run`` gives.

Shared by the run_batch test files: results, inbox packets and ledger rows compared
field by field, timing fields aside (a batch's time is shared out among its texts).
"""

from __future__ import annotations

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


def assert_close(got: Any, want: Any, where: str = "") -> None:
    """Equal, with floats to 1e-5: a padded batch moves an encoder's scores by ~1e-7."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), where
        for key in want:
            assert_close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list | tuple):
        assert isinstance(got, list | tuple) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_close(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        assert got == pytest.approx(want, abs=1e-5), where
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def assert_same_results(batch: list[Result], alone: list[Result]) -> None:
    """Outputs, status, escalation, route, decisions and trace shape match, per text."""
    assert len(batch) == len(alone)
    for i, (b, a) in enumerate(zip(batch, alone, strict=True)):
        where = f"text {i} ({a.input!r})"
        assert (b.input, b.status, b.route) == (a.input, a.status, a.route), where
        if a.output.text is not None or a.output.label is not None:
            assert b.answer == a.answer, where  # else the answer prints data: compared below
        assert b.escalation == a.escalation, where  # reason, why and packet id
        decisions = [[t.decision for t in root.walk()] for root in b.trace]
        want = [[t.decision for t in root.walk()] for root in a.trace]
        assert_close(
            [[d and d.to_dict() for d in ds] for ds in decisions],
            [[d and d.to_dict() for d in ds] for ds in want],
            f"{where} decisions",
        )
        b_view, a_view = no_latency(b.to_dict()), no_latency(a.to_dict())
        del b_view["answer"], a_view["answer"]  # floats printed in full, for data outputs
        assert_close(b_view, a_view, where)


def assert_same_packets(batch: Inbox, alone: Inbox) -> None:
    """The same packets (one per escalated text, same keys), in the same order."""
    got, want = batch.list(), alone.list()
    assert len(got) == len(want)
    for b, a in zip(got, want, strict=True):
        drop = {"created_at", "trace"}
        b_dict = {k: v for k, v in b.to_dict().items() if k not in drop}
        a_dict = {k: v for k, v in a.to_dict().items() if k not in drop}
        assert_close(b_dict, a_dict, f"packet {a.id}")
        assert_close(no_latency(b.to_dict()["trace"]), no_latency(a.to_dict()["trace"]))


# Timing fields: a batch's time is shared out, so these differ (tokens and decisions do not).
_TIMED = {"at", "latency_ms", "compute_s"}


def assert_same_ledger(batch: Ledger, alone: Ledger) -> None:
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
    assert got and got == want


def run_both(
    make: Any, texts: Sequence[str], keys: Sequence[str]
) -> tuple[list[Result], list[Result], Workflow, Workflow]:
    """Run ``texts`` one at a time on one workflow and as a batch on another."""
    alone_wf, batch_wf = make("alone"), make("batch")
    alone = [alone_wf.run(t, key=k) for t, k in zip(texts, keys, strict=True)]
    batch = batch_wf.run_batch(texts, keys=keys)
    return batch, alone, batch_wf, alone_wf
