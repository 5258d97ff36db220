"""``length_batches``: every text once, runs of similar length, fewer padded tokens."""

from __future__ import annotations

import random

from slmstack.models.encoder import CALL_TOKENS, length_batches


def _padded(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


def test_each_text_once_in_runs_of_at_most_batch_size_sorted_by_length():
    rng = random.Random(0)
    lengths = [rng.randint(1, 200) for _ in range(500)]
    batches = list(length_batches(lengths, 32))
    assert sorted(i for b in batches for i in b) == list(range(500))
    assert all(1 <= len(b) <= 32 for b in batches)
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat)
    assert list(length_batches([], 8)) == []


def test_cuts_where_padding_costs_more_than_a_call():
    # The support-desk queries: 8 to 25 tokens, 64 at once.
    lengths = [9, 10, 22, 25, 12, 8] * 11
    batches = list(length_batches(lengths, 64))
    fixed = _padded([list(range(len(lengths)))], lengths) + CALL_TOKENS
    ours = _padded(batches, lengths) + CALL_TOKENS * len(batches)
    assert len(batches) > 1 and ours < 0.8 * fixed
    # Texts of one length: one call, however many fit.
    assert [len(b) for b in length_batches([7] * 64, 64)] == [64]
