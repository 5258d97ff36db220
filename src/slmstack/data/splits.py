"""Deterministic train/validation splits: stratified by label, or by whole groups."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from slmstack.errors import ConfigError

T = TypeVar("T")


def stratified_split(
    items: Sequence[T], labels: Sequence[str], *, fraction: float, seed: int
) -> tuple[list[T], list[T]]:
    """Split into (train, validation), taking ``fraction`` of each label for validation.

    Each label keeps at least one item on the train side, and labels with two or more
    items put at least one on the validation side, so every class is both learned
    and measured.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"validation fraction must be in (0, 1). Got {fraction} instead.")
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        groups[label].append(i)
    val_idx: list[int] = []
    for label in sorted(groups):
        idx = groups[label]
        order = rng.permutation(len(idx))
        n_val = min(max(1, round(fraction * len(idx))), len(idx) - 1) if len(idx) > 1 else 0
        val_idx.extend(idx[j] for j in order[:n_val])
    val_set = set(val_idx)
    train = [items[i] for i in range(len(items)) if i not in val_set]
    val = [items[i] for i in sorted(val_set)]
    return train, val


def shuffled_groups(groups: Sequence[str], seed: int) -> list[list[int]]:
    """Row indices of each group (rows with the same key), the groups in a seeded order.

    A held-out split takes whole groups from the front (documents, vendors), so that no
    group has rows on both sides; the order depends only on the set of keys and ``seed``.

    Example:
        >>> shuffled_groups(["a", "b", "a", "c"], seed=0)
        [[3], [0, 2], [1]]
    """
    keys = sorted(set(groups))
    members: dict[str, list[int]] = {k: [] for k in keys}
    for i, key in enumerate(groups):
        members[key].append(i)
    return [members[keys[k]] for k in np.random.default_rng(seed).permutation(len(keys))]
