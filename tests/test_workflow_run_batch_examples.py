"""``Workflow.run_batch`` against ``Workflow.run`` on the three example workflows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from example_skills import needs_lora, quick_summarizer
from run_batch_checks import (
    BF16_TOL,
    FP32_TOL,
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
@pytest.mark.parametrize(
    ("example", "cpu"),
    [("support-desk", "as is"), ("support-desk", "no native bf16"),
     ("feedback-analysis", "as is"), ("invoices", "as is")],
)  # fmt: skip
def test_run_batch_equals_run_on_the_examples(example, cpu, tmp_path, monkeypatch):
    """Same results, packets and ledger rows per text, batched or alone.

    The support desk's encoders take ``precision: auto``: bf16 on a CPU that has it
    natively, where a batch may round differently from a lone text, so there floats (and
    the decimals printed in decisions) are compared to ``BF16_TOL``; labels, routes,
    statuses, escalations and decisions must still be the same. Run as on a CPU without
    native bf16 (``auto`` is fp32 then), every float must agree to ``FP32_TOL``.
    """
    from slmstack.models import encoder

    if cpu == "no native bf16":
        monkeypatch.setattr(encoder, "native_bf16", lambda: False)
    if example != "invoices":
        pytest.importorskip("llama_cpp", reason="this example generates with SmolLM2")
    from slmstack.workflows import load_workflow

    # The example's own cache: trained once (as run.py does), then loaded; the support
    # desk's LoRA summarizer is trained for seconds instead (tests/example_skills.py).
    given = {}
    if example in ("support-desk", "feedback-analysis"):
        needs_lora()
        given["summarizer"] = quick_summarizer(example)
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
    bf16 = any(
        encoder.resolve_precision(getattr(skill, "precision", "fp32")) == "bf16"
        for skill in loaded.skills.values()
    )
    assert bf16 == (example == "support-desk" and cpu == "as is" and encoder.native_bf16())
    tol = BF16_TOL if bf16 else FP32_TOL
    assert_same_results(batch, alone, tol)
    assert_same_packets(batch_wf.inbox, alone_wf.inbox, tol)
    assert batch_wf.inbox.count() == sum(
        r.escalation is not None and r.escalation.to == "human" for r in batch
    )
    assert batch_wf.ledger is not None and alone_wf.ledger is not None
    assert_same_ledger(batch_wf.ledger, alone_wf.ledger, tol)
