"""Contrastive fine-tuning of a sentence encoder on paraphrase pairs.

The loss is the multiple-negatives ranking loss (Henderson et al., 2017; the
``MultipleNegativesRankingLoss`` of sentence-transformers): in a batch of pairs
``(a_i, b_i)``, each ``a_i`` must score its own ``b_i`` above every other ``b_j``, a
cross-entropy over scaled cosine similarities. It needs only positive pairs; the rest
of the batch supplies the negatives. Pairs that ask for the same thing (same ``b`` or
the same group) are masked out as negatives, since treating a paraphrase as a negative
would teach the encoder to pull apart sentences that mean the same.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from slmstack.data.splits import shuffled_groups
from slmstack.errors import ConfigError, DataError
from slmstack.models.encoder import pad_batch
from slmstack.models.shared import private_copy
from slmstack.retrieval.encoder import SentenceEncoder
from slmstack.retrieval.knowledge import normalize_question
from slmstack.training.loop import LoopConfig, LoopResult, train_loop

_MIN_PAIRS = 4


@dataclass(frozen=True)
class PairTraining:
    """Schedule of a contrastive run. ``scale`` 20 is the sentence-transformers default."""

    epochs: int = 1
    learning_rate: float = 2e-5
    batch_size: int = 32
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    patience: int = 1
    val_fraction: float = 0.1
    scale: float = 20.0
    seed: int = 0


def mnr_loss(a: torch.Tensor, b: torch.Tensor, groups: torch.Tensor, scale: float) -> torch.Tensor:
    """Symmetric multiple-negatives ranking loss on unit vectors ``a``, ``b`` (batch, dim).

    ``groups[i] == groups[j]`` marks pairs that mean the same; they are not negatives.
    """
    sims = a @ b.T * scale
    same = groups.unsqueeze(0) == groups.unsqueeze(1)
    off_diagonal = ~torch.eye(len(a), dtype=torch.bool, device=a.device)
    sims = sims.masked_fill(same & off_diagonal, float("-inf"))
    target = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(sims, target) + F.cross_entropy(sims.T, target)) / 2


def _group_ids(pairs: Sequence[tuple[str, str]]) -> list[int]:
    """Pairs sharing a normalised ``b`` (or whose texts chain) get one group id."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(normalize_question(a)), find(normalize_question(b))
        if ra != rb:
            parent[ra] = rb
    roots: dict[str, int] = {}
    return [roots.setdefault(find(normalize_question(b)), len(roots)) for _, b in pairs]


def held_out_split(
    pairs: Sequence[tuple[str, str]], val_fraction: float, seed: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Seeded ``(validation, training)`` pair indices; every copy of a query on one side.

    Pairs are held out by their query (``a``, normalised), whole: a query paired with two
    paraphrases, or a pair listed twice, would otherwise be trained on and then scored,
    which flatters the epoch kept. Whole queries are taken until ``val_fraction`` of the
    pairs is held out (at least one); the last query in the seeded order always trains.

    Raises:
        DataError: every pair has the same query, so none can be held out.
    """
    groups = shuffled_groups([normalize_question(a) for a, _ in pairs], seed)
    if len(groups) < 2:
        raise DataError(
            "every paraphrase pair has the same query, so none can be held out to choose "
            "the epoch; add pairs for other queries"
        )
    target = max(1, round(val_fraction * len(pairs)))
    val: list[int] = []
    for group in groups[:-1]:
        if len(val) >= target:
            break
        val.extend(group)
    held = set(val)
    train = [i for g in groups for i in g if i not in held]
    return np.asarray(val, np.int64), np.asarray(train, np.int64)


def finetune_on_pairs(
    encoder: SentenceEncoder, pairs: Sequence[tuple[str, str]], cfg: PairTraining
) -> LoopResult:
    """Fine-tune ``encoder`` in place on ``(query, paraphrase)`` pairs; keep the best epoch.

    A shared module (:mod:`slmstack.models.shared`) is first replaced by a private copy,
    so other skills on the same base are unaffected.

    A seeded ``val_fraction`` of the pairs is held out; the validation metric is how
    often a held-out ``a``'s nearest ``b`` (among all distinct ``b`` texts) belongs to
    its own group of paraphrases. ``history`` in the result starts with the pretrained
    encoder's score (epoch 0).
    """
    for i, pair in enumerate(pairs):
        if len(pair) != 2 or not all(isinstance(t, str) and t.strip() for t in pair):
            raise DataError(f"pair #{i} must be two non-empty strings, got {pair!r}")
    if len(pairs) < _MIN_PAIRS:
        raise DataError(
            f"contrastive fine-tuning needs at least {_MIN_PAIRS} paraphrase pairs, got "
            f"{len(pairs)}; add pairs or fit without them"
        )
    if cfg.batch_size < 2:
        raise ConfigError(f"batch_size must be >= 2 for in-batch negatives, got {cfg.batch_size}")
    # A shared base (SentenceEncoder(shared=True)) is never trained: swap in a copy.
    encoder.model = private_copy(encoder.model)
    groups = _group_ids(pairs)
    val_idx, train_idx = held_out_split(pairs, cfg.val_fraction, cfg.seed)
    tok_a = encoder.tokenize([a for a, _ in pairs])
    tok_b = encoder.tokenize([b for _, b in pairs])
    # Validation asks: does the held-out query's nearest candidate mean the same thing
    # (same group)? Exact-text retrieval would be near chance when a group has many
    # interchangeable paraphrases.
    group_of = {normalize_question(b): groups[i] for i, (_, b) in enumerate(pairs)}
    pairs_b = {normalize_question(b): b for _, b in pairs}
    candidates = sorted(group_of.items())
    cand_group = np.array([g for _, g in candidates])
    val_group = np.array([groups[i] for i in val_idx])

    def make_batches(epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        idx = np.random.default_rng(cfg.seed + 1 + epoch).permutation(train_idx)
        for s in range(0, len(idx), cfg.batch_size):
            batch = idx[s : s + cfg.batch_size]
            if len(batch) < 2:
                continue
            ids_a, mask_a = pad_batch([tok_a.input_ids[i] for i in batch], encoder.pad_id)
            ids_b, mask_b = pad_batch([tok_b.input_ids[i] for i in batch], encoder.pad_id)
            yield (
                ids_a,
                mask_a,
                ids_b,
                mask_b,
                torch.tensor([groups[i] for i in batch]),
            )

    def loss_fn(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        ids_a, mask_a, ids_b, mask_b, group = batch
        return mnr_loss(
            encoder.forward(ids_a, mask_a), encoder.forward(ids_b, mask_b), group, cfg.scale
        )

    def evaluate() -> float:
        cand = encoder.encode([pairs_b[norm] for norm, _ in candidates]).vectors
        queries = encoder.encode([pairs[i][0] for i in val_idx]).vectors
        return float((cand_group[(queries @ cand.T).argmax(axis=1)] == val_group).mean())

    steps = max(1, sum(1 for s in range(0, len(train_idx), cfg.batch_size)))
    loop = LoopConfig(
        epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        head_learning_rate=cfg.learning_rate,
        warmup_ratio=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        patience=cfg.patience,
        precision=encoder.precision,
    )
    result = train_loop(
        encoder.model,
        make_batches=make_batches,
        steps_per_epoch=steps,
        loss_fn=loss_fn,
        evaluate=evaluate,
        cfg=loop,
        description="contrastive fine-tune",
    )
    # When fine-tuning made held-out retrieval worse, the loop kept the pretrained weights
    # (best epoch 0); the history shows where it started.
    result.history.insert(0, {"epoch": 0, "val_metric": result.start_metric})
    encoder.model.requires_grad_(False)  # inference from here on; no gradient bookkeeping
    return result
