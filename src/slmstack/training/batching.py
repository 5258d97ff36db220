"""Shuffled training batches of similar-length texts.

A batch is padded to its longest text, so random batches of short queries pay for the
one long query among them: on BANKING77 a random batch of 32 is padded to about 47
tokens while the median text has 13. Sorting a large shuffled pool by length and
cutting it into batches (then shuffling the batch order) keeps most of the randomness
of plain shuffling and removes most of the padding, which is most of the compute.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from slmstack.errors import ConfigError


def bucketed_batches(
    lengths: Sequence[int], batch_size: int, *, seed: int, pool_batches: int = 50
) -> list[list[int]]:
    """Indices of one epoch, in batches of similar length, reproducible from ``seed``.

    The data are shuffled, split into pools of ``pool_batches * batch_size`` texts,
    each pool is sorted by length and cut into batches, and the batches are shuffled.
    ``pool_batches=1`` gives plain random batches.

    Example:
        >>> bucketed_batches([5, 1, 4, 2], 2, seed=0, pool_batches=2)  # doctest: +SKIP
        [[1, 3], [2, 0]]
    """
    if batch_size < 1 or pool_batches < 1:
        raise ConfigError(
            f"batch_size and pool_batches must be >= 1. Got {batch_size} and {pool_batches}."
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths)).tolist()
    pool = batch_size * pool_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        part = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches.extend(part[j : j + batch_size] for j in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]
