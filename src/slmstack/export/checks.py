"""The two checks an exported skill must pass before it is written.

* **Parity**: the exported skill against the torch skill on the same texts: the share
  of texts given the same decision (the same label and, for a skill with a scope model,
  the same out-of-scope flag), and the largest absolute difference of any class
  probability. An fp32 export must agree almost exactly (it is the same arithmetic in
  another order); an int8 export is allowed to move more, and its real test is the gate.
  A graph with a wrong weight, a lost normalisation or a shifted token id fails here.
* **Accuracy gate**: accuracy on a labelled validation file, torch skill against the
  exported one. The export is refused when it loses more than ``margin`` points.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray

from slmstack.types import Example

ProbaFn = Callable[[Sequence[str]], NDArray[np.float64]]


@dataclass(frozen=True)
class ParityLimits:
    """How close an export must stay to the torch skill."""

    min_agreement: float
    max_prob_diff: float


FP32_PARITY = ParityLimits(min_agreement=0.995, max_prob_diff=1e-3)
INT8_PARITY = ParityLimits(min_agreement=0.90, max_prob_diff=1.0)


@dataclass(frozen=True)
class ParityReport:
    """Label agreement and the largest probability difference on ``n`` texts."""

    n: int
    agreement: float
    max_prob_diff: float
    mean_prob_diff: float
    passed: bool
    limits: ParityLimits
    scope_agreement: float | None = None  # same out-of-scope flag; None: no scope model

    def to_json(self) -> dict[str, object]:
        """JSON form, for the exported skill's config and the CLI."""
        out = asdict(self)
        out["agreement"] = round(self.agreement, 6)
        out["max_prob_diff"] = float(f"{self.max_prob_diff:.3g}")
        out["mean_prob_diff"] = float(f"{self.mean_prob_diff:.3g}")
        if self.scope_agreement is not None:
            out["scope_agreement"] = round(self.scope_agreement, 6)
        return out

    def problem(self, subject: str = "the exported skill") -> str:
        """Why the check failed, in words (empty when it passed); ``subject`` starts it."""
        if self.passed:
            return ""
        scope = (
            "" if self.scope_agreement is None else
            "; a text agrees when its label and its out-of-scope decision do, and the "
            f"decision alone agrees on {self.scope_agreement:.1%}"
        )  # fmt: skip
        return (
            f"{subject} agrees with the torch skill on {self.agreement:.1%} of "
            f"{self.n} texts (at least {self.limits.min_agreement:.1%} required{scope}) and its "
            f"probabilities differ by up to {self.max_prob_diff:.3g} (at most "
            f"{self.limits.max_prob_diff:.3g} allowed)"
        )


def parity(
    reference: NDArray[np.float64],
    exported: NDArray[np.float64],
    limits: ParityLimits,
    *,
    flags: tuple[NDArray[np.bool_], NDArray[np.bool_]] | None = None,
) -> ParityReport:
    """Compare two probability matrices (rows: texts, columns: the same classes).

    ``flags`` are both skills' out-of-scope flags per text, for a skill that abstains
    with ``"out_of_scope"``: a text then agrees only when its label and its flag do.
    """
    if reference.shape != exported.shape:
        raise ValueError(f"shapes differ: {reference.shape} against {exported.shape}")
    same = reference.argmax(axis=1) == exported.argmax(axis=1)
    scope = None
    if flags is not None:
        same_flag = np.asarray(flags[0]) == np.asarray(flags[1])
        same &= same_flag
        scope = float(same_flag.mean())
    diff = np.abs(reference - exported)
    agreement = float(same.mean())
    max_diff = float(diff.max())
    passed = agreement >= limits.min_agreement and max_diff <= limits.max_prob_diff
    return ParityReport(len(reference), agreement, max_diff, float(diff.mean()), passed, limits,
                        scope)  # fmt: skip


@dataclass(frozen=True)
class GateReport:
    """Validation score of the torch and the exported skill, in points.

    The score is accuracy for classifiers and entity micro-F1 for taggers (``metric``);
    the fields keep the name ``accuracy`` for both.
    """

    n: int
    reference_accuracy: float
    exported_accuracy: float
    margin: float
    metric: str = "accuracy"

    @property
    def drop(self) -> float:
        """Points lost by the export (negative when it gained)."""
        return self.reference_accuracy - self.exported_accuracy

    @property
    def passed(self) -> bool:
        """Whether the drop is within the margin."""
        return self.drop <= self.margin + 1e-9

    def to_json(self) -> dict[str, object]:
        """JSON form, for the exported skill's config and the CLI."""
        return {"n": self.n, "reference_accuracy": round(self.reference_accuracy, 3),
                "exported_accuracy": round(self.exported_accuracy, 3),
                "drop_points": round(self.drop, 3), "margin_points": self.margin,
                "metric": self.metric, "passed": self.passed}  # fmt: skip


def accuracy(probs: NDArray[np.float64], labels: Sequence[str], classes: Sequence[str]) -> float:
    """Accuracy in points of the argmax of ``probs`` (a label outside ``classes`` is wrong)."""
    predicted = [classes[int(i)] for i in probs.argmax(axis=1)]
    return 100.0 * sum(p == y for p, y in zip(predicted, labels, strict=True)) / len(labels)


def gate(
    reference: NDArray[np.float64],
    exported: NDArray[np.float64],
    data: Sequence[Example],
    classes: Sequence[str],
    margin: float,
) -> GateReport:
    """The accuracy gate on labelled validation data, given both skills' probabilities."""
    labels = [ex.label for ex in data]
    return GateReport(
        len(data), accuracy(reference, labels, classes), accuracy(exported, labels, classes),
        margin,
    )  # fmt: skip


def throughput(proba: ProbaFn, texts: Sequence[str], *, repeats: int = 2) -> float:
    """Texts per second of ``proba`` on ``texts`` (best of ``repeats``, after a warm-up)."""
    proba(texts[: min(len(texts), 16)])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        proba(texts)
        best = min(best, time.perf_counter() - start)
    return len(texts) / max(best, 1e-9)


def source_precision(skill: object) -> dict[str, str]:
    """What the exported skill's config records of the source's precision.

    The parity check compares with the source run in fp32; a source that served in bf16
    (``precision: bf16`` or ``auto`` on a CPU with it) gave slightly other outputs, and
    the export's config says so.
    """
    return {"precision": str(getattr(skill, "precision", "fp32")), "parity_against": "fp32"}
