"""Temperature scaling and expected calibration error.

A cascade accepts a skill's answer when its confidence clears a threshold, so the
confidence must mean what it says: of the answers given with confidence 0.9, about 90%
should be right. Temperature scaling (Guo et al., 2017) fits one scalar on held-out
logits and leaves the ranking, hence accuracy, unchanged.
"""

from __future__ import annotations

import itertools

import numpy as np
from numpy.typing import NDArray

MIN_TO_SHARPEN = 30  # held-out examples needed before a fit may sharpen (T < 1)


def fit_temperature(logits: NDArray[np.float32], labels: NDArray[np.int64]) -> float:
    """The temperature T > 0 minimising the NLL of ``softmax(logits / T)``.

    It never sharpens (T < 1) on fewer than ``MIN_TO_SHARPEN`` examples, or when every one
    is already right: there the NLL falls without limit as T shrinks, and a fit on three
    texts made "the weather is nice" a 0.95-confident intent.
    """
    import torch  # training only: prediction (``softmax``) stays torch-free

    x = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.exp().item())
    if len(labels) < MIN_TO_SHARPEN or bool((np.argmax(logits, axis=1) == labels).all()):
        t = max(t, 1.0)
    return float(np.clip(t, 0.05, 20.0))  # other degenerate fits on tiny sets


def expected_calibration_error(
    probs: NDArray[np.float64], labels: NDArray[np.int64], n_bins: int = 15
) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width bins."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def softmax(logits: NDArray[np.float32], temperature: float = 1.0) -> NDArray[np.float64]:
    """Row-wise softmax of ``logits / temperature``."""
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: NDArray[np.float64] = e / e.sum(axis=1, keepdims=True)
    return out
