import numpy as np
import pytest

from slmstack.errors import ConfigError
from slmstack.training.batching import bucketed_batches

LENGTHS = [int(x) for x in np.random.default_rng(1).integers(3, 60, size=500)]


def test_every_index_once_in_batches_of_the_requested_size():
    batches = bucketed_batches(LENGTHS, 32, seed=0)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(LENGTHS)))
    assert sum(len(b) < 32 for b in batches) <= 1  # only the last cut of the pool


def test_same_seed_same_batches_other_seed_other_batches():
    assert bucketed_batches(LENGTHS, 16, seed=3) == bucketed_batches(LENGTHS, 16, seed=3)
    assert bucketed_batches(LENGTHS, 16, seed=3) != bucketed_batches(LENGTHS, 16, seed=4)


def test_bucketing_cuts_padding_compared_with_random_batches():
    def padded(batches):
        return sum(len(b) * max(LENGTHS[i] for i in b) for b in batches)

    random = bucketed_batches(LENGTHS, 16, seed=0, pool_batches=1)
    bucketed = bucketed_batches(LENGTHS, 16, seed=0)
    assert padded(bucketed) < 0.8 * padded(random)
    # Batch order is still shuffled: lengths do not simply rise through the epoch.
    firsts = [LENGTHS[b[0]] for b in bucketed]
    assert firsts != sorted(firsts)


@pytest.mark.parametrize(("size", "pool"), [(0, 50), (8, 0)])
def test_bad_sizes_are_refused(size, pool):
    with pytest.raises(ConfigError, match="must be >= 1"):
        bucketed_batches(LENGTHS, size, seed=0, pool_batches=pool)
