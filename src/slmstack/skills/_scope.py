"""Out-of-scope detection for :class:`~slmstack.skills.classifier.TextClassifier`.

A softmax confidence says how sure the model is *between its labels*; a text about
something else entirely can still get a confident label. The scope model asks the
other question: does this text look like the texts the skill was trained on?

Method: the Mahalanobis distance of the sentence vector to the nearest class mean,
with one covariance shared by all classes (the within-class scatter of the training
vectors, shrunk towards a scaled identity so that it is invertible on small data).
The distance is turned into a conformal p-value against the held-out validation texts:
``p = (1 + #validation texts at least as atypical) / (1 + #validation texts)``.
A text with ``p < alpha`` is less typical than all but a fraction ``alpha`` of the
in-scope validation texts, so about ``alpha`` of in-scope traffic is flagged by design,
whatever the data. With ``n`` validation texts ``p`` is never below ``1 / (n + 1)``: a
small validation split cannot flag anything at a small ``alpha``, which is the honest
answer when there is too little evidence.

The statistics are sufficient statistics (counts, means, pooled within-class scatter),
so a ``head`` skill resumed on more data merges them exactly.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from slmstack.errors import DataWarning

SHRINKAGE = 0.1  # identity share of the covariance; 0.01-0.3 behave the same on BANKING77

F64 = NDArray[np.float64]


def _class_stats(
    x: NDArray[np.float32], y: NDArray[np.int64], n_classes: int
) -> tuple[F64, F64, F64]:
    """(counts, means, within-class scatter) of vectors ``x`` with labels ``y``."""
    x64 = x.astype(np.float64)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    sums = np.zeros((n_classes, x.shape[1]))
    np.add.at(sums, y, x64)
    means = sums / np.maximum(counts, 1.0)[:, None]
    centred = x64 - means[y]
    return counts, means, centred.T @ centred


@dataclass
class ScopeModel:
    """Class means, pooled within-class scatter and the validation reference scores."""

    counts: F64
    means: F64
    scatter: F64
    scatter_n: float  # how many vectors ``scatter`` sums over
    reference: F64  # sorted typicality scores of held-out in-scope texts
    _whiten: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = field(
        default=None, repr=False, compare=False
    )

    @classmethod
    def fit(
        cls,
        x: NDArray[np.float32],
        y: NDArray[np.int64],
        n_classes: int,
        x_val: NDArray[np.float32],
    ) -> ScopeModel:
        """Statistics from training vectors, reference from validation vectors."""
        counts, means, scatter = _class_stats(x, y, n_classes)
        return cls(counts, means, scatter, float(len(x)), np.empty(0))._referenced(x_val)

    def merged(
        self,
        x: NDArray[np.float32],
        y: NDArray[np.int64],
        n_classes: int,
        x_val: NDArray[np.float32],
        *,
        same_encoder: bool,
    ) -> tuple[ScopeModel, list[int]]:
        """The model after resuming on ``(x, y)``; also the classes left with old statistics.

        ``same_encoder=True`` (a ``head`` skill: the encoder did not change) merges the
        old and new statistics exactly. Otherwise the old vectors came from another
        encoder: classes in the new data take their statistics from it alone, and classes
        absent from it keep their old mean (returned, so the caller can warn).
        """
        counts, means, scatter = _class_stats(x, y, n_classes)
        old_n = np.zeros(n_classes)
        old_means = np.zeros_like(means)
        k = len(self.counts)
        old_n[:k], old_means[:k] = self.counts, self.means
        absent = [c for c in range(n_classes) if counts[c] == 0 and old_n[c] > 0]
        if same_encoder:
            total = old_n + counts
            both = (old_n > 0) & (counts > 0)
            diff = old_means - means
            weight = np.where(both, old_n * counts / np.maximum(total, 1.0), 0.0)
            scatter = self.scatter + scatter + (diff * weight[:, None]).T @ diff
            weighted = old_means * old_n[:, None] + means * counts[:, None]
            means = weighted / np.maximum(total, 1.0)[:, None]
            counts, scatter_n, stale = total, self.scatter_n + len(x), []
        else:
            means[absent], counts[absent] = old_means[absent], old_n[absent]
            scatter_n, stale = float(len(x)), absent
        model = ScopeModel(counts, means, scatter, scatter_n, np.empty(0))
        return model._referenced(x_val), stale

    def _referenced(self, x_val: NDArray[np.float32]) -> ScopeModel:
        """Set the reference to the sorted scores of the validation vectors."""
        self.reference = np.sort(self.scores(x_val))
        return self

    def _whitening(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(whitening matrix, whitened class means, labels without data), computed once.

        Scoring runs in torch rather than numpy on purpose: a numpy matmul wakes the
        BLAS thread pool, whose spinning threads then slow the encoder's next forward
        pass (twice the single-query latency on 2 cores).
        """
        if self._whiten is None:
            dim = self.scatter.shape[0]
            cov = self.scatter / max(self.scatter_n, 1.0)
            cov = cov + SHRINKAGE * max(float(np.trace(cov)) / dim, 1e-6) * np.eye(dim)
            # cov⁻¹ = L Lᵀ, so (x - m)ᵀ cov⁻¹ (x - m) = ‖(x - m) L‖².
            whiten = torch.linalg.cholesky(torch.linalg.inv(torch.from_numpy(cov)))
            centres = torch.from_numpy(self.means) @ whiten
            self._whiten = (whiten, centres, torch.from_numpy(self.counts == 0))
        return self._whiten

    def scores(self, x: NDArray[np.float32]) -> F64:
        """Typicality: minus the squared Mahalanobis distance to the nearest class mean."""
        whiten, centres, empty = self._whitening()
        with torch.inference_mode():
            z = torch.from_numpy(x).double() @ whiten
            dist = torch.cdist(z, centres, compute_mode="donot_use_mm_for_euclid_dist") ** 2
            dist[:, empty] = torch.inf
            out: F64 = (-dist.min(dim=1).values).numpy()
        return out

    def p_values(self, x: NDArray[np.float32]) -> F64:
        """Conformal p-value of each vector against the validation reference."""
        n = len(self.reference)
        rank = np.searchsorted(self.reference, self.scores(x), side="right")
        out: F64 = ((rank + 1.0) / (n + 1.0)).astype(np.float64)
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        """The statistics as tensors, for ``scope.safetensors``."""
        return {
            "counts": torch.from_numpy(self.counts.copy()),
            "means": torch.from_numpy(self.means.copy()),
            "scatter": torch.from_numpy(self.scatter.copy()),
            "scatter_n": torch.tensor([self.scatter_n], dtype=torch.float64),
            "reference": torch.from_numpy(self.reference.copy()),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> ScopeModel:
        """Inverse of :meth:`tensors`."""
        arrays = {k: tensors[k].numpy().astype(np.float64) for k in tensors}
        return cls(
            arrays["counts"],
            arrays["means"],
            arrays["scatter"],
            float(arrays["scatter_n"][0]),
            arrays["reference"],
        )


def fit_scope(
    old: ScopeModel | None,
    x: NDArray[np.float32],
    y: NDArray[np.int64],
    x_val: NDArray[np.float32],
    classes: list[str],
    *,
    same_encoder: bool,
) -> ScopeModel:
    """A new scope model, or ``old`` updated with more data (resume); warns on stale means."""
    if old is None:
        return ScopeModel.fit(x, y, len(classes), x_val)
    model, stale = old.merged(x, y, len(classes), x_val, same_encoder=same_encoder)
    if stale:
        names = ", ".join(repr(classes[c]) for c in stale[:5])
        warnings.warn(
            f"{len(stale)} labels ({names}{', ...' if len(stale) > 5 else ''}) are not in the "
            "resume data, so the out-of-scope model keeps their class means from the encoder "
            "before this fine-tune; include a few examples of every label when resuming a "
            "finetune skill.",
            DataWarning,
            stacklevel=4,
        )
    return model


def warn_small_scope(n_val: int, alpha: float) -> None:
    """Warn at training time when the scope model can flag nothing.

    The smallest conformal p-value against ``n_val`` reference texts is ``1/(n_val+1)``,
    so below ``1/alpha - 1`` texts no p-value can fall under ``alpha``.
    """
    if alpha > 0 and n_val < 1 / alpha - 1:
        warnings.warn(
            DataWarning(
                f"the validation split has {n_val} texts, fewer than 1/scope_alpha - 1 = "
                f"{1 / alpha - 1:.0f}, so the scope model can flag no text as out of scope. "
                f"Add data, or raise scope_alpha to at least {1 / (n_val + 1):.3f}."
            ),
            stacklevel=4,
        )


def scope_card(scope: ScopeModel | None, alpha: float) -> dict[str, Any] | str:
    """The model-card section of the scope model."""
    if scope is None:
        return "none"
    n = len(scope.reference)
    return {
        "method": "Mahalanobis distance to the nearest label mean (shared, shrunk "
        "covariance), as a conformal p-value against the validation texts",
        "scope_alpha": alpha,
        "reference texts": n,
        "smallest possible p-value": round(1 / (n + 1), 4),
        "can flag texts": "yes"
        if 1 / (n + 1) < alpha
        else "NO: too few validation texts for this scope_alpha",
    }
