"""Few-shot training of :class:`~slmstack.skills.classifier.TextClassifier` (``fewshot``).

Method: SetFit (Tunstall et al. 2022, "Efficient Few-Shot Learning Without Prompts",
arXiv:2209.11055). With five or ten examples per label, cross-entropy fine-tuning has too
few examples to move a 22M-parameter encoder safely, and a frozen encoder leaves intents
that share words ("card arrival" / "card delivery estimate") close together. SetFit
instead trains the encoder on *pairs* drawn from the labelled examples: a pair of the
same label should have cosine similarity 1, a pair of different labels 0 (mean squared
error on the cosine, ``CosineSimilarityLoss``). ``n`` examples give ``O(n^2)`` pairs, so a
few examples per label still give thousands of training signals. Each *iteration* of
pair sampling gives every example one positive and one negative partner (SetFit's
``num_iterations``); after the encoder is tuned, the usual logistic-regression head is
fitted on its sentence vectors.

Two ways to form the pairs (``pairing``): ``"sampled"`` is SetFit's, above (one forward
pass of two texts per pair); ``"in_batch"`` applies the same loss, positives and negatives
weighed 1:1, to every pair inside a batch of texts built from same-label chunks, so one
forward pass of 32 texts serves 496 pairs instead of 16. Each epoch makes
``pair_iterations`` passes; after each epoch the encoder is scored on the validation split
(a logistic-regression probe fitted on the training part), the best epoch is kept and
training stops when it stops improving (``patience``). The validation examples never
enter a pair, but the final head is fitted on them too: with five examples a label,
holding one out of the head costs more than it tells.

Why not the ``setfit`` package: version 1.2 does train offline on our local MiniLM folder
with transformers 5.24 and sentence-transformers 6.2 (tried), once ``datasets`` and
``evaluate`` (and with them pyarrow) are installed, but it saves its head as a pickle and
writes its own folder layout outside the skill's verified artifact. The method is short
enough to own.

Measured (``bench/fewshot.py``, BANKING77, shared 2-core CPU): with the few hundred steps
this CPU allows (two epochs; SetFit's default is 20 iterations), neither pairing beat the
frozen encoder + logistic regression on validation data (10 per intent: 81.6 and 81.3
against 81.8), and on test it lost 1 to 2 points at 5, 10 and 20 per intent. SetFit's own
regimen (20 iterations, about 1,900 steps) on mpnet did not help either
(``bench/fewshot_explore/setfit_long.py``: 79.7 sampled, 81.8 in-batch, against 84.7 for
the frozen head), and below 5 per intent it lost at 2 and tied at 3
(``bench/fewshot_explore/tiny.py``), so ``strategy="auto"`` trains ``head``; see
``bench/RESULTS.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from slmstack.errors import DataError
from slmstack.models.encoder import pad_batch
from slmstack.skills._classifier_training import ClassifierNet, forward_all
from slmstack.training.batching import bucketed_batches
from slmstack.training.loop import LoopConfig, LoopResult, train_loop

PairBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
Pairing = Literal["sampled", "in_batch"]
# in_batch: examples of one label that enter a batch together, so that it holds positives.
_PER_LABEL = 4


def sample_pairs(
    y: NDArray[np.int64], iterations: int, rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
    """SetFit's pair sampling: per iteration, each example gets one positive and one negative.

    Returns the indices of both sides and the target cosine (1 same label, 0 different).
    A label with a single example is paired with itself as its positive.
    """
    classes = np.unique(y)
    if len(classes) < 2:
        raise DataError(
            "fewshot training needs at least two labels to draw negative pairs; got "
            f"{len(classes)}. Add examples of another label."
        )
    members = {int(c): np.flatnonzero(y == c) for c in classes}
    outside = {int(c): np.flatnonzero(y != c) for c in classes}
    left: list[int] = []
    right: list[int] = []
    target: list[float] = []
    for _ in range(iterations):
        for i, label in enumerate(y.tolist()):
            same = members[label]
            others = same[same != i]
            left.append(i)
            right.append(int(rng.choice(others)) if len(others) else i)
            target.append(1.0)
            left.append(i)
            right.append(int(rng.choice(outside[label])))
            target.append(0.0)
    return (
        np.asarray(left, dtype=np.int64),
        np.asarray(right, dtype=np.int64),
        np.asarray(target, dtype=np.float32),
    )


def label_batches(
    y: NDArray[np.int64], batch_size: int, rng: np.random.Generator
) -> list[NDArray[np.int64]]:
    """One pass over the examples in batches built of same-label chunks of up to 4."""
    chunks: list[NDArray[np.int64]] = []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        chunks.extend(idx[i : i + _PER_LABEL] for i in range(0, len(idx), _PER_LABEL))
    flat = np.concatenate([chunks[i] for i in rng.permutation(len(chunks))])
    return [flat[i : i + batch_size] for i in range(0, len(flat), batch_size)]


def in_batch_loss(net: ClassifierNet, batch: PairBatch) -> torch.Tensor:
    """SetFit's loss over every pair of texts in the batch, positives and negatives weighed 1:1.

    ``batch`` holds the texts and their label indices (not pairs).
    """
    ids, mask, labels = batch
    vec = F.normalize(net.embed(ids, mask).float(), dim=-1)
    cos = vec @ vec.T
    upper = torch.ones_like(cos, dtype=torch.bool).triu(diagonal=1)
    same = labels[:, None] == labels[None, :]
    # Positives and negatives weigh half each, as SetFit's 1:1 sampling; a batch without
    # one kind (a last batch of one label, or of one text) trains on what it has.
    terms = [cos[mask_].sub(target).pow(2).mean() for mask_, target in
             ((upper & same, 1.0), (upper & ~same, 0.0)) if mask_.any()]  # fmt: skip
    return torch.stack(terms).mean() if terms else cos.sum() * 0.0


def pair_loss(net: ClassifierNet, batch: PairBatch) -> torch.Tensor:
    """Mean squared error between the pair's cosine similarity and its 0/1 target."""
    ids, mask, target = batch
    vec = F.normalize(net.embed(ids, mask).float(), dim=-1)
    n = len(target)
    return F.mse_loss((vec[:n] * vec[n:]).sum(-1), target)


def contrastive_tune(
    net: ClassifierNet,
    input_ids: Sequence[Sequence[int]],
    y: NDArray[np.int64],
    *,
    evaluate: Callable[[], float],
    cfg: LoopConfig,
    pair_iterations: int,
    batch_size: int,
    pad_id: int,
    seed: int,
    pairing: Pairing = "sampled",
    description: str = "few-shot pairs",
) -> LoopResult:
    """Tune ``net.encoder`` in place on SetFit pairs; keep the best epoch by ``evaluate()``.

    ``pairing="sampled"`` is SetFit's: ``batch_size`` counts pairs (two texts each in one
    forward pass), grouped by length so short intents are not padded to long ones.
    ``"in_batch"`` scores every pair inside batches of ``batch_size`` texts built from
    same-label chunks: each forward pass then serves ``batch_size**2 / 2`` pairs instead of
    ``batch_size / 2``, and ``pair_iterations`` counts passes over the examples.
    """
    if pairing == "in_batch":
        steps = pair_iterations * ((len(y) + batch_size - 1) // batch_size)
        labels = torch.from_numpy(y)

        def text_batches(epoch: int) -> Iterator[PairBatch]:
            rng = np.random.default_rng(seed + epoch)
            for _ in range(pair_iterations):
                for idx in label_batches(y, batch_size, rng):
                    ids, mask = pad_batch([input_ids[i] for i in idx], pad_id)
                    yield ids, mask, labels[idx]

        return train_loop(net, make_batches=text_batches, steps_per_epoch=steps,
                          loss_fn=lambda batch: in_batch_loss(net, batch), evaluate=evaluate,
                          cfg=cfg, description=description)  # fmt: skip
    steps = (2 * pair_iterations * len(y) + batch_size - 1) // batch_size
    lengths = np.array([len(x) for x in input_ids])

    def make_batches(epoch: int) -> Iterator[PairBatch]:
        rng = np.random.default_rng(seed + epoch)
        left, right, target = sample_pairs(y, pair_iterations, rng)
        longest = np.maximum(lengths[left], lengths[right]).tolist()
        for idx in bucketed_batches(longest, batch_size, seed=seed + epoch):
            texts = [input_ids[i] for i in left[idx]] + [input_ids[i] for i in right[idx]]
            ids, mask = pad_batch(texts, pad_id)
            yield ids, mask, torch.from_numpy(target[idx])

    return train_loop(
        net,
        make_batches=make_batches,
        steps_per_epoch=steps,
        loss_fn=lambda batch: pair_loss(net, batch),
        evaluate=evaluate,
        cfg=cfg,
        description=description,
    )


def fewshot_tune(
    net: ClassifierNet,
    train_ids: Sequence[Sequence[int]],
    y_train: NDArray[np.int64],
    val_ids: Sequence[Sequence[int]],
    y_val: NDArray[np.int64],
    *,
    cfg: LoopConfig,
    pair_iterations: int,
    batch_size: int,
    pad_id: int,
    seed: int,
    head_c: float,
    metric: str,
    pairing: Pairing,
    description: str,
) -> LoopResult:
    """:func:`contrastive_tune`, scored after each epoch by a probe on the validation split."""
    if not len(y_val):
        raise DataError(
            "strategy 'fewshot' stops tuning on a validation split, and this data has none: "
            "give at least one label two or more examples."
        )

    def embed(ids: Sequence[Sequence[int]]) -> NDArray[np.float32]:
        return forward_all(net, ids, what="embed", pad_id=pad_id, batch_size=max(batch_size, 64),
                           precision=cfg.precision)  # fmt: skip

    def evaluate() -> float:
        return probe_score(embed(train_ids), y_train, embed(val_ids), y_val, c=head_c,
                           seed=seed, metric=metric)  # fmt: skip

    return contrastive_tune(
        net, train_ids, y_train, evaluate=evaluate, cfg=cfg, pair_iterations=pair_iterations,
        batch_size=batch_size, pad_id=pad_id, seed=seed, pairing=pairing,
        description=description,
    )  # fmt: skip


def probe_score(
    x_train: NDArray[np.float32],
    y_train: NDArray[np.int64],
    x_val: NDArray[np.float32],
    y_val: NDArray[np.int64],
    *,
    c: float,
    seed: int,
    metric: str = "accuracy",
) -> float:
    """Validation accuracy (or macro-F1) of a logistic-regression probe on training vectors."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    probe = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x_train, y_train)
    pred = probe.predict(x_val)
    if metric == "macro_f1":
        return float(f1_score(y_val, pred, average="macro", zero_division=0))
    return float((pred == y_val).mean())
