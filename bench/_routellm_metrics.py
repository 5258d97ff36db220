"""RouteLLM benchmark: the paper's metrics (PGR curve, APGR, CPT) and cascade thresholds."""

from __future__ import annotations

from typing import Any

import numpy as np

from _routellm_data import TARGETS, Array, Index, Json, Task


def curve_all(scores: Array, weak: Array, strong: Array) -> tuple[Array, Array]:
    """(share, quality) at every distinct threshold, share ascending from 0 to 1."""
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    gain = np.cumsum((strong - weak)[order])
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # last index of each tie group
    n = len(s)
    share = np.r_[0.0, (ends + 1) / n]
    quality = weak.mean() + np.r_[0.0, gain[ends]] / n
    return share, quality


def curve_deciles(scores: Array, weak: Array, strong: Array) -> tuple[Array, Array]:
    """RouteLLM's 11 points: thresholds at the score deciles (``pd.qcut(..., 10)``)."""
    cuts = np.quantile(scores, np.linspace(0, 1, 11))
    points = []
    for i, t in enumerate(cuts):
        sel = scores >= t if i < len(cuts) - 1 else scores > t
        points.append((sel.mean(), np.where(sel, strong, weak).mean()))
    points.sort(key=lambda p: p[0])  # RouteLLM sorts by strong_percentage
    return np.array([p[0] for p in points]), np.array([p[1] for p in points])


def summarize(share: Array, quality: Array, qw: float, qs: float, *, interp: bool) -> Json:
    """APGR and CPT(50/80 %) of one curve (``interp``: RouteLLM's np.interp reading)."""
    pgr = (quality - qw) / (qs - qw)
    out: dict[str, Any] = {"apgr": float(np.trapezoid(pgr, share))}
    for x in TARGETS:
        if interp:
            cpt = float(np.interp(qw + x * (qs - qw), quality, share))
        else:
            reach = np.flatnonzero(pgr >= x - 1e-12)
            cpt = float(share[reach[0]]) if len(reach) else float("nan")
        out[f"cpt{round(100 * x)}"] = cpt
    return out


def evaluate(scores: Array, weak: Array, strong: Array, boots: Array | None = None) -> Json:
    """Both readings of the paper's metrics (and the decile curve's points).

    ``boots``: bootstrap APGRs (all thresholds) of this router, for a 95 % interval.
    """
    qw, qs = float(weak.mean()), float(strong.mean())
    share, quality = curve_deciles(scores, weak, strong)
    out = {
        "deciles": {
            **summarize(share, quality, qw, qs, interp=True),
            "points": [[float(a), float(b)] for a, b in zip(share, quality, strict=True)],
        },
        "all": summarize(*curve_all(scores, weak, strong), qw, qs, interp=False),
    }
    if boots is not None:
        out["all"]["apgr_ci95"] = [float(x) for x in np.percentile(boots, [2.5, 97.5])]
    return out


def boot_apgr(scores: Array, weak: Array, strong: Array, boot: int, seed: int) -> Array:
    rng = np.random.default_rng(seed)  # same seed -> same resamples for every router
    out = []
    for _ in range(boot):
        i = rng.integers(0, len(scores), len(scores))
        qw, qs = weak[i].mean(), strong[i].mean()
        out.append(
            summarize(*curve_all(scores[i], weak[i], strong[i]), qw, qs, interp=False)["apgr"]
        )
    return np.array(out)


def cascade(
    val_scores: Array, task: Task, val_idx: Index, test_scores: Array, test_idx: Index
) -> list[Json]:
    """Thresholds tuned on validation for PGR 50 / 80 %, then applied to the test part."""
    rows = []
    for target in TARGETS:
        w, s = task.weak[val_idx], task.strong[val_idx]
        share, quality = curve_all(val_scores, w, s)
        pgr = (quality - w.mean()) / (s.mean() - w.mean())
        k = int(np.flatnonzero(pgr >= target - 1e-12)[0])
        # The threshold of point k: the lowest score admitted there (+inf at share 0).
        t = np.inf if k == 0 else float(np.sort(val_scores)[::-1][round(share[k] * len(w)) - 1])
        sel = test_scores >= t
        tw, ts = task.weak[test_idx], task.strong[test_idx]
        q = np.where(sel, ts, tw).mean()
        rows.append(
            {
                "target_pgr": target,
                "threshold": t,
                "val_share": float(share[k]),
                "test_share": float(sel.mean()),
                "test_pgr": float((q - tw.mean()) / (ts.mean() - tw.mean())),
            }
        )
    return rows
