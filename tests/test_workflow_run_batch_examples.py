"""``Workflow.run_batch`` against ``Workflow.run`` on the three example workflows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from example_skills import needs_lora, quick_desk_summarizer
from run_batch_checks import (
    assert_same_ledger,
    assert_same_packets,
    assert_same_results,
    run_both,
)
from slmstack.workflows import (
    Inbox,
    Workflow,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _example_texts(example: str) -> list[str]:
    data = EXAMPLES / example / "data"
    if example == "support-desk":
        lines = (data / "queries.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(x)["text"] for x in lines if x.strip()]
    if example == "feedback-analysis":
        with (data / "reviews.csv").open(newline="", encoding="utf-8") as f:
            return [r["text"] for r in csv.DictReader(f)]
    return [p.read_text(encoding="utf-8") for p in sorted((data / "invoices").glob("*.txt"))]


@pytest.mark.slow
@pytest.mark.parametrize("example", ["support-desk", "feedback-analysis", "invoices"])
def test_run_batch_equals_run_on_the_examples(example, tmp_path):
    if example != "invoices":
        pytest.importorskip("llama_cpp", reason="this example generates with SmolLM2")
    from slmstack.workflows import load_workflow

    # The example's own cache: trained once (as run.py does), then loaded; the support
    # desk's LoRA summarizer is trained for seconds instead (tests/example_skills.py).
    given = {}
    if example == "support-desk":
        needs_lora()
        given["summarizer"] = quick_desk_summarizer()
    loaded = load_workflow(
        EXAMPLES / example / "workflow.yaml",
        cache_dir=EXAMPLES / example / ".slmstack-cache",
        skills=given,
    )

    def make(tag: str) -> Workflow:
        return Workflow(
            loaded.steps, skills=loaded.skills, name=loaded.name, backends=loaded.backends,
            blocks=loaded.blocks, inbox=Inbox(f"sqlite:///{tmp_path / f'inbox-{tag}.db'}"),
            ledger=f"sqlite:///{tmp_path / f'ledger-{tag}.db'}", prices=loaded.meter().prices,
        )  # fmt: skip

    texts = _example_texts(example)
    keys = [f"{example}#{i}" for i in range(len(texts))]
    batch, alone, batch_wf, alone_wf = run_both(make, texts, keys)
    assert_same_results(batch, alone)
    assert_same_packets(batch_wf.inbox, alone_wf.inbox)
    assert batch_wf.inbox.count() == sum(
        r.escalation is not None and r.escalation.to == "human" for r in batch
    )
    assert batch_wf.ledger is not None and alone_wf.ledger is not None
    assert_same_ledger(batch_wf.ledger, alone_wf.ledger)
