"""Training and batched scoring for :class:`~slmstack.skills.recommender.Recommender`.

Sequences are catalogue indices, oldest first. A training batch right-pads the last
``max_len + 1`` items of each sequence; every prefix predicts its next item. After each
epoch the net ranks the validation targets (history items excluded, as ``predict``
does); the epoch with the best NDCG@10 is kept and training stops after ``patience``
epochs without improvement.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from slmstack.errors import DataError
from slmstack.evaluation.ranking import rank_metrics, ranks_from_scores
from slmstack.progress import progress
from slmstack.skills._recommender_net import Negatives, RecNet, cosine_logits, next_item_loss

Case = tuple[list[int], int]
"""A validation case: history (catalogue indices) and its target."""


@dataclass(frozen=True)
class TrainConfig:
    """What :func:`train_net` needs from the skill's parameters."""

    epochs: int
    patience: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    temperature: float
    negatives: Negatives
    max_len: int
    seed: int


def holdout(
    sequences: list[list[int]], validation: list[list[int]] | None
) -> tuple[list[list[int]], list[Case]]:
    """Training sequences and validation cases (history, target).

    Given ``validation`` sequences, their last item is the target. Otherwise the last item
    of each training sequence of three or more items is held out (and not trained on).

    Raises:
        DataError: no user has two items (there is no next item to learn from), or the
            ``validation`` histories hold no case (each needs a history and a target).
    """
    if not any(len(s) >= 2 for s in sequences):
        raise DataError(
            "no user has two or more items, so there is no next item to learn from; give "
            "each user's interactions in order (a user with one item teaches nothing)"
        )
    if validation is not None:
        cases = [(s[:-1], s[-1]) for s in validation if len(s) >= 2]
        if not cases:
            raise DataError(
                "the validation histories give no case: each needs two or more items (the "
                "history, then the next item to find); check the validation file"
            )
        return sequences, cases
    cases = [(s[:-1], s[-1]) for s in sequences if len(s) >= 3]
    return [s[:-1] if len(s) >= 3 else s for s in sequences], cases


def pad(histories: Sequence[Sequence[int]], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``(batch, L)`` indices of the last ``max_len`` items, and lengths."""
    cut = [list(h[-max_len:]) for h in histories]
    lengths = torch.tensor([len(h) for h in cut], dtype=torch.long)
    out = torch.zeros(len(cut), int(lengths.max()), dtype=torch.long)
    for row, h in enumerate(cut):
        out[row, : len(h)] = torch.tensor(h, dtype=torch.long)
    return out, lengths


def score_histories(
    net: RecNet,
    items: torch.Tensor,
    histories: Sequence[Sequence[int]],
    *,
    max_len: int,
    temperature: float,
    batch_size: int = 512,
) -> NDArray[np.float32]:
    """``(histories, catalogue)`` logits; ``items`` are the catalogue's item vectors."""
    out = np.empty((len(histories), len(items)), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(histories), batch_size):
            chunk = histories[start : start + batch_size]
            ids, lengths = pad(chunk, max_len)
            users = net.last_state(items[ids], lengths)
            out[start : start + len(chunk)] = cosine_logits(users, items, temperature).numpy()
    return out


def validation_metrics(
    net: RecNet, text: torch.Tensor, id_rows: torch.Tensor, cases: Sequence[Case], cfg: TrainConfig
) -> dict[str, float]:
    """Recall@10 and NDCG@10 on ``cases``, history items excluded."""
    net.eval()
    with torch.inference_mode():
        items = net.item_vectors(text, id_rows)
    scores = score_histories(
        net, items, [h for h, _ in cases], max_len=cfg.max_len, temperature=cfg.temperature
    )
    ranks = ranks_from_scores(scores, [t for _, t in cases], exclude=[h for h, _ in cases])
    return rank_metrics(ranks, (10,))


def train_net(
    net: RecNet,
    text: torch.Tensor,
    id_rows: torch.Tensor,
    sequences: Sequence[Sequence[int]],
    validation: Sequence[Case],
    cfg: TrainConfig,
) -> list[dict[str, Any]]:
    """Train ``net`` in place (best validation epoch kept); the per-epoch history."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    trainable = [s for s in sequences if len(s) >= 2]
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    history: list[dict[str, Any]] = []
    best, best_state, waited = -1.0, copy.deepcopy(net.state_dict()), 0
    with progress() as bar:
        task = bar.add_task("train recommender", total=cfg.epochs, info="")
        for epoch in range(1, cfg.epochs + 1):
            start = time.perf_counter()
            net.train()
            order = rng.permutation(len(trainable))
            total, steps = 0.0, 0
            for b in range(0, len(order), cfg.batch_size):
                batch = [trainable[i] for i in order[b : b + cfg.batch_size]]
                ids, lengths = pad(batch, cfg.max_len + 1)
                items = net.item_vectors(text, id_rows)
                states = net.user_states(items[ids[:, :-1]], lengths - 1)
                inside = torch.arange(ids.shape[1] - 1)[None, :] < (lengths - 1)[:, None]
                loss = next_item_loss(
                    states[inside],
                    ids[:, 1:][inside],
                    items,
                    temperature=cfg.temperature,
                    negatives=cfg.negatives,
                )
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach())
                steps += 1
            row: dict[str, Any] = {
                "epoch": epoch,
                "loss": total / max(steps, 1),
                "seconds": time.perf_counter() - start,
            }
            if validation:
                row.update(
                    {
                        f"val_{k}": v
                        for k, v in validation_metrics(net, text, id_rows, validation, cfg).items()
                    }
                )
            history.append(row)
            bar.update(task, advance=1, info=f"val ndcg@10 {row.get('val_ndcg@10', 0):.4f}")
            if not validation:
                continue
            if row["val_ndcg@10"] > best:
                best, best_state, waited = row["val_ndcg@10"], copy.deepcopy(net.state_dict()), 0
            else:
                waited += 1
                if waited >= cfg.patience:
                    break
    if validation:
        net.load_state_dict(best_state)
    net.eval()
    return history
