"""``bench/speed.py``: the three-tier cascade (thresholds from validation) and paired rounds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from _speed_hardware import (
    timed,
)


# --------------------------------------------------------------------------- cascade
def cascade_choice(tiers: list[tuple[np.ndarray, float]], classes: list[str],
                   labels: list[str], target: float) -> dict:  # fmt: skip
    """Thresholds (t1, t2) with the highest estimated throughput whose accuracy >= target.

    ``tiers``: (probabilities on the validation texts, seconds per text) for static,
    int8 and finetune; a text stops at the first tier whose confidence clears its threshold.
    """
    (ps, cs), (pq, cq), (pf, cf) = tiers
    y = np.array([classes.index(lab) for lab in labels])
    conf_s, conf_q = ps.max(1), pq.max(1)
    grid = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99, 1.01]
    best: dict | None = None
    for t1 in grid:
        for t2 in grid:
            at_s = conf_s >= t1
            at_q = ~at_s & (conf_q >= t2)
            at_f = ~at_s & ~at_q
            pred = np.where(at_s, ps.argmax(1), np.where(at_q, pq.argmax(1), pf.argmax(1)))
            acc = 100.0 * float((pred == y).mean())
            cost = len(y) * cs + (~at_s).sum() * cq + at_f.sum() * cf
            row = {"t1": t1, "t2": t2, "val_accuracy": round(acc, 2),
                   "est_texts_per_s": round(len(y) / cost, 1),
                   "share_static": round(float(at_s.mean()), 3),
                   "share_int8": round(float(at_q.mean()), 3),
                   "share_finetune": round(float(at_f.mean()), 3)}  # fmt: skip
            if acc >= target and (best is None or row["est_texts_per_s"] > best["est_texts_per_s"]):
                best = row
    assert best is not None  # (1.01, 1.01) is the finetune skill alone
    return best


def run_cascade(systems: list[Any], t1: float, t2: float, texts: list[str]) -> tuple[list, float]:
    """The real cascade on ``texts``: each tier runs on the texts the previous one passed on."""
    start = time.perf_counter()
    preds: list[str | None] = [None] * len(texts)
    todo = list(range(len(texts)))
    for system, threshold in zip(systems, (t1, t2, -1.0), strict=True):
        if not todo:
            break
        probs = system.predict_proba([texts[i] for i in todo])
        keep = []
        for row, i in zip(probs, todo, strict=True):
            if row.max() >= threshold:
                preds[i] = system.classes_[int(row.argmax())]
            else:
                keep.append(i)
        todo = keep
    return preds, time.perf_counter() - start


PAIRED_ROUNDS = 3


def paired_rounds(systems: dict[str, Any], runners: dict[str, Callable[[], tuple[list, float]]],
                  texts: list[str], rounds: int) -> dict[str, Any]:  # fmt: skip
    """The targets' ratios, each from runs timed back to back, in ``rounds`` rounds.

    The table above times each system once, minutes apart, and this machine's speed
    drifts within a run (the matmul peaks at its start and end differ by up to 20%), so
    a ratio of two rows mixes two speeds of the machine. Here each round times, one after
    the other on all test texts: the baseline, the int8 skill, the ``finetune`` skill and
    each cascade (the order rotates each round); a ratio is taken within a round, and the
    median over rounds is reported.
    """
    jobs: dict[str, Callable[[], float]] = {
        "st-fp32": lambda: timed(lambda: systems["st-fp32"].predict_proba(texts)),
        "onnx-int8": lambda: timed(lambda: systems["onnx-int8"].predict_proba(texts)),
        "finetune": lambda: timed(lambda: systems["finetune"].predict_proba(texts)),
        **{name: (lambda run=run: run()[1]) for name, run in runners.items()},
    }
    names = list(jobs)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            seconds[name].append(jobs[name]())

    def over(fast: str, slow: str) -> list[float]:
        return [b / a for a, b in zip(seconds[fast], seconds[slow], strict=True)]

    ratios = {"onnx-int8 / st-fp32": over("onnx-int8", "st-fp32")}
    ratios.update({f"{name} / finetune": over(name, "finetune") for name in runners})
    return {
        "rounds": rounds,
        "texts_per_s": {n: [round(len(texts) / s, 1) for s in v] for n, v in seconds.items()},
        "ratios": {k: [round(x, 2) for x in v] for k, v in ratios.items()},
        "median_ratios": {k: round(float(np.median(v)), 2) for k, v in ratios.items()},
    }
