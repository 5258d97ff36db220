"""Benchmark ``Workflow.run_batch`` against ``Workflow.run``, one text at a time.

The workflow is ``examples/support-desk/workflow.yaml`` as shipped, on the example's
trained skills (``.slmstack-cache``, trained once by ``examples/support-desk/run.py``),
with a temporary inbox and ledger (the YAML declares both, so both modes file packets
and record ledger rows). The texts are the example's English queries that stay on the
small models (language detector → intent cascade → FAQ answerer, or entities and a
template, or the inbox), repeated to 640 texts. The two English queries that reach a
generator (the troubleshooter and the complaint summary) are left out: SmolLM2 writes
one text at a time either way, and it would dominate both timings; their skills are
replaced by stand-ins that fail if called, so the measured workflow is otherwise the
shipped one.

Each round times the 640 texts one at a time (``run``) and in batches of 64
(``run_batch``), alternating which goes first; the figure is the median round. Before
timing, the results of both modes are compared (status, route, answer) and every
``predict`` call is counted.

Run (it takes the shared CPU lock itself, ``bench/_machine.cpu_lock``: do not wrap it
in ``flock``)::

    .venv/bin/python bench/workflow_batch.py --write-results
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ClassVar

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SLMSTACK_PROGRESS", "0")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from _machine import cpu_lock  # noqa: E402
from _workflow_batch_report import previous_runs, render, write_results  # noqa: E402

DESK = REPO / "examples" / "support-desk"


class GcPauses:
    """Seconds the cyclic garbage collector held the process, and how many full collections."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._start = 0.0
        gc.callbacks.append(self._on)

    def _on(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start
            self.full += info["generation"] == 2

    def take(self) -> tuple[float, int]:
        """The pauses since the last call (seconds, full collections), then reset."""
        out = (self.seconds, self.full)
        self.seconds, self.full = 0.0, 0
        return out


class Counting:
    """Wraps a skill and counts its ``predict`` calls, texts and seconds."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.calls = 0
        self.texts = 0
        self.seconds = 0.0
        for attr in ("produces", "classes_"):
            if hasattr(inner, attr):
                setattr(self, attr, getattr(inner, attr))

    def predict(self, texts: Sequence[str]) -> list[Any]:
        self.calls += 1
        self.texts += len(texts)
        t0 = time.perf_counter()
        out = self.inner.predict(texts)
        self.seconds += time.perf_counter() - t0
        return out


class NotCalled:
    """Stands in for a generator skill that the benchmark's texts never reach."""

    produces: ClassVar[frozenset[str]] = frozenset({"text", "label", "data"})

    def __init__(self, name: str):
        self.name = name

    def predict(self, texts: Sequence[str]) -> list[Any]:
        raise RuntimeError(f"the benchmark's texts should not reach {self.name!r}: {texts[:1]}")


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_info() -> dict[str, Any]:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    flags = subprocess.run(
        "grep -o 'avx512[a-z_]*\\|amx[a-z_]*\\|avx2' /proc/cpuinfo | sort -u",
        shell=True, capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    return {"cpu": model, "flags": flags, "cores": os.cpu_count()}


def english_small_model_queries() -> list[str]:
    """The example's English queries whose expected route reaches no generator."""
    lines = (DESK / "expected.jsonl").read_text(encoding="utf-8").splitlines()
    expected = [json.loads(x) for x in lines if x.strip()]
    # Troubleshooting and complaints generate, unless the intent cascade escalates first.
    generates = {"troubleshooting", "complaint"}
    return [
        e["text"]
        for e in expected
        if e["language"] == "en"
        and (e["intent"] not in generates or e["reason"] == "intent unclear")
    ]


def build(folder: Path, tag: str, precision: str | None = None) -> tuple[Any, dict[str, Counting]]:
    """The shipped workflow, counting calls; ``precision`` forces every encoder's (control)."""
    from slmstack.workflows import Workflow, load_workflow

    stand_ins = {name: NotCalled(name) for name in ("troubleshooter", "summarizer")}
    loaded = load_workflow(
        DESK / "workflow.yaml", skills=stand_ins, cache_dir=DESK / ".slmstack-cache"
    )
    if precision is not None:
        for skill in loaded.skills.values():
            for part in (skill, getattr(skill, "encoder_", None)):
                if hasattr(part, "precision"):
                    part.precision = precision  # read at predict time
    counted = {k: Counting(v) for k, v in loaded.skills.items()}
    wf = Workflow(
        loaded.steps, skills=counted, name=loaded.name, backends=loaded.backends,
        blocks=loaded.blocks, inbox=f"sqlite:///{folder / f'inbox-{tag}.db'}",
        ledger=f"sqlite:///{folder / f'ledger-{tag}.db'}", prices=loaded.meter().prices,
    )  # fmt: skip
    return wf, counted


def one_at_a_time(wf: Any, texts: list[str]) -> tuple[float, list[Any]]:
    t0 = time.perf_counter()
    results = [wf.run(t) for t in texts]
    return time.perf_counter() - t0, results


def batched(wf: Any, texts: list[str], size: int) -> tuple[float, list[Any]]:
    t0 = time.perf_counter()
    results = []
    for at in range(0, len(texts), size):
        results += wf.run_batch(texts[at : at + size])
    return time.perf_counter() - t0, results


def skill_ceilings(
    counts: dict[str, Counting], texts: list[str], used: dict[str, int]
) -> dict[str, dict[str, float]]:
    """Each skill's own ``predict``: ms per text alone and in one batch (best of 3)."""
    out = {}
    for name in used:
        skill = counts[name].inner
        alone, together = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            for text in texts:
                skill.predict([text])
            alone.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            skill.predict(texts)
            together.append(time.perf_counter() - t0)
        a, b = min(alone) * 1000 / len(texts), min(together) * 1000 / len(texts)
        out[name] = {"alone_ms": round(a, 3), "batched_ms": round(b, 3), "ratio": round(a / b, 2)}
    return out


def measure(n: int, size: int, rounds: int, precision: str | None = None) -> dict[str, Any]:
    import torch

    from slmstack.heap import freeze_loaded

    queries = english_small_model_queries()
    texts = [queries[i % len(queries)] for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        single_wf, single_counts = build(folder, "single", precision)
        batch_wf, batch_counts = build(folder, "batch", precision)
        # Warm-up, untimed: both modes once on a few texts (first calls allocate).
        one_at_a_time(single_wf, texts[:16])
        batched(batch_wf, texts[:size], size)
        for counts in (single_counts, batch_counts):
            for c in counts.values():
                c.calls = c.texts = 0
                c.seconds = 0.0
        # As `slmstack run`, the server and batch jobs do once their models are loaded.
        frozen = freeze_loaded()
        pauses = GcPauses()
        gc_s: dict[str, list[float]] = {"single": [], "batch": []}
        load_before = load()
        t_single: list[float] = []
        t_batch: list[float] = []
        same = True
        for r in range(rounds):
            order = ("single", "batch") if r % 2 == 0 else ("batch", "single")
            got: dict[str, list[Any]] = {}
            for mode in order:
                pauses.take()
                if mode == "single":
                    secs, got[mode] = one_at_a_time(single_wf, texts)
                    t_single.append(secs)
                else:
                    secs, got[mode] = batched(batch_wf, texts, size)
                    t_batch.append(secs)
                gc_s[mode].append(round(pauses.take()[0], 3))
            views = {m: [(x.status, x.route, x.answer) for x in v] for m, v in got.items()}
            same = same and views["single"] == views["batch"]
            if r == 0:
                calls = {
                    "single": {k: c.calls for k, c in single_counts.items() if c.calls},
                    "batch": {k: c.calls for k, c in batch_counts.items() if c.calls},
                }
                predict_s = {
                    "single": round(sum(c.seconds for c in single_counts.values()), 3),
                    "batch": round(sum(c.seconds for c in batch_counts.values()), 3),
                }
                round_s = {"single": t_single[-1], "batch": t_batch[-1]}
                routes = sorted({" → ".join(x.route) for x in got["single"]})
                escalated = sum(x.status == "escalated" for x in got["single"])
        ceilings = skill_ceilings(batch_counts, texts[:size], calls["single"])
        from slmstack.models.encoder import resolve_precision

        precisions = {
            k: f"{c.inner.precision} ({resolve_precision(c.inner.precision)})"
            for k, c in batch_counts.items()
            if hasattr(c.inner, "precision")
        }
        load_after = load()
        gc.callbacks.remove(pauses._on)
        for wf in (single_wf, batch_wf):
            if wf.ledger is not None:
                wf.ledger.close()
    single_s, batch_s = statistics.median(t_single), statistics.median(t_batch)
    return {
        "texts": n, "distinct_texts": len(queries), "batch_size": size, "rounds": rounds,
        "one_at_a_time_s": [round(x, 3) for x in t_single],
        "batched_s": [round(x, 3) for x in t_batch],
        "one_at_a_time_texts_per_s": round(n / single_s, 1),
        "batched_texts_per_s": round(n / batch_s, 1),
        "speedup": round(single_s / batch_s, 2),
        "results_identical": same, "predict_calls_first_round": calls,
        "predict_s_first_round": predict_s,
        "round_s_first_round": {k: round(v, 3) for k, v in round_s.items()},
        "skill_ceilings": ceilings, "precision": precisions,
        "escalated_per_round": escalated, "routes": routes,
        "torch_threads": torch.get_num_threads(),
        "load_before": load_before, "load_after": load_after,
        "gc_frozen_objects": frozen, "gc_pause_s": gc_s,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write-results", action="store_true")
    parser.add_argument(
        "--no-lock", action="store_true", help="the caller holds the CPU lock already"
    )
    args = parser.parse_args(argv)
    with nullcontext(0.0) if args.no_lock else cpu_lock() as waited:
        res = measure(args.texts, args.batch_size, args.rounds)
        # The peer in the same run: every encoder forced to fp32, as on an AVX2-only CPU.
        res["fp32_control"] = measure(args.texts, args.batch_size, args.rounds, "fp32")
    res["lock_wait_s"] = round(waited, 1)
    res["machine"] = cpu_info()
    res["when"] = time.strftime("%Y-%m-%d %H:%M %Z")
    res["python"] = sys.version.split()[0]
    res["previous"] = previous_runs()
    print(render(res))
    if args.write_results:
        write_results(res)
    return 0 if res["results_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
