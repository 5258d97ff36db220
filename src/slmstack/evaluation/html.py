"""``slmstack eval --html``: an evaluation report as one self-contained HTML page.

The headline metrics and speed as tables, then what each report holds: per-class
precision, recall and F1 (a table and a bar chart of F1, worst first), the confusion
matrix as a heatmap (each row normalised, counts in the cells when they fit), and the
reliability diagram of a classifier's confidence (accuracy against mean confidence per
bin: on the diagonal when calibrated). Plots are inline PNG (matplotlib, the ``report``
extra), so the page opens from disk and attaches to a ticket.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slmstack.costs.html import image, new_figure, page, png_base64, table

_PURPOSE = "slmstack eval --html"
_MAX_CELLS_LABELLED = 15  # confusion matrices up to 15 labels show their counts
_MAX_DRAWN = 40  # labels a confusion matrix draws (the most confused, past that)


def evaluation_page(report: Mapping[str, Any], *, title: str) -> str:
    """The HTML page of ``report`` (what a skill's ``evaluate`` returns)."""
    parts = [_headline(report)]
    per_class = report.get("per_class")
    if isinstance(per_class, Mapping) and per_class:
        parts.append(_per_class(per_class))
    matrix = report.get("confusion_matrix")
    if isinstance(matrix, Mapping) and matrix.get("labels"):
        n = len(matrix["labels"])
        which = "" if n <= _MAX_DRAWN else f"; the {_MAX_DRAWN} of {n} labels most confused"
        parts.append(image(f"Confusion matrix (rows: true label, share of the row{which})",
                           _confusion(matrix)))  # fmt: skip
    bins = report.get("reliability")
    if isinstance(bins, Mapping) and bins.get("count"):
        parts.append(image("Reliability: accuracy against confidence", _reliability(bins)))
        parts.append(
            '<p class="note">Each point is a bin of predictions by confidence; its size '
            "grows with the bin's count. A calibrated skill sits on the diagonal.</p>"
        )
    return page(title, "\n".join(parts))


def _headline(report: Mapping[str, Any]) -> str:
    rows = [[k, _number(v)] for k, v in report.items() if isinstance(v, int | float)]
    speed = report.get("speed")
    if isinstance(speed, Mapping):
        rows += [[f"speed: {k}", _number(v)] for k, v in speed.items()]
    return "<h2>Metrics</h2>" + table(["metric", "value"], rows)


def _per_class(per_class: Mapping[str, Mapping[str, Any]]) -> str:
    labels = sorted(per_class, key=lambda lab: (per_class[lab]["f1"], lab))
    rows = [[lab, *(f"{per_class[lab][k]:.3f}" for k in ("precision", "recall", "f1")),
             str(per_class[lab]["support"])] for lab in labels]  # fmt: skip
    fig = new_figure((8, max(2.0, 0.28 * len(labels) + 1)), _PURPOSE)
    ax = fig.add_subplot()
    ax.barh(range(len(labels)), [per_class[lab]["f1"] for lab in labels], color="#4c78a8")
    ax.set_yticks(
        range(len(labels)), labels=_literal(labels), fontsize=8 if len(labels) > 30 else 10
    )
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.invert_yaxis()  # the worst label on top
    return (
        "<h2>Per class (worst F1 first)</h2>"
        + table(["label", "precision", "recall", "F1", "support"], rows)
        + image("F1 per class", png_base64(fig))
    )


def _drawn_cells(
    matrix: Mapping[str, Any],
) -> tuple[list[str], NDArray[np.float64], NDArray[np.float64]]:
    """The labels, counts and row shares the confusion heatmap draws.

    Past ``_MAX_DRAWN`` labels only the most confused are drawn, but each share stays a
    share of the *whole* row: a row's errors into labels left out still count, or a
    label right half the time would draw as right every time.
    """
    labels = list(matrix["labels"])
    counts = np.asarray(matrix["matrix"], dtype=np.float64)
    totals = counts.sum(axis=1)
    if len(labels) > _MAX_DRAWN:  # ticks of 150 labels overlap: draw where the errors are
        errors = counts.sum(axis=0) + totals - 2 * np.diag(counts)
        keep = np.sort(np.argsort(-errors, kind="stable")[:_MAX_DRAWN])
        labels, counts, totals = [labels[i] for i in keep], counts[np.ix_(keep, keep)], totals[keep]
    return labels, counts, counts / np.maximum(totals, 1.0)[:, None]


def _confusion(matrix: Mapping[str, Any]) -> str:
    labels, counts, share = _drawn_cells(matrix)
    side = min(14.0, max(4.0, 0.35 * len(labels) + 2))
    fig = new_figure((side, side), _PURPOSE)
    ax = fig.add_subplot()
    shown = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    small = 8 if len(labels) > 20 else 10
    ax.set_xticks(range(len(labels)), labels=_literal(labels), rotation=90, fontsize=small)
    ax.set_yticks(range(len(labels)), labels=_literal(labels), fontsize=small)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(labels) <= _MAX_CELLS_LABELLED:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if counts[i, j]:
                    color = "white" if share[i, j] > 0.5 else "black"
                    ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", color=color)
    return png_base64(fig)


def _reliability(bins: Mapping[str, Any]) -> str:
    fig = new_figure((5, 5), _PURPOSE)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="#999", label="calibrated")
    sizes = 20 + 180 * np.asarray(bins["count"]) / max(bins["count"])
    ax.scatter(bins["confidence"], bins["accuracy"], s=sizes, color="#e45756", label="bins")
    ax.plot(bins["confidence"], bins["accuracy"], color="#e45756")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean confidence")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left")
    return png_base64(fig)


def _number(value: float) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _literal(labels: list[str]) -> list[str]:
    """Labels drawn as written: a ``$`` would start matplotlib's math mode.

    ``plan_$_pro_$`` had crashed the report, and ``$5-$10 refund`` drew as math. The
    column of abstentions (no label) is named, not left blank.
    """
    return [str(label).replace("$", r"\$") or "(no label)" for label in labels]
