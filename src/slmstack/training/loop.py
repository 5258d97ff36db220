"""A small, generic fine-tuning loop: AdamW, linear warm-up and decay, early stopping.

The caller supplies the batches and a loss; the loop owns the schedule, the
validation checks and keeping the best weights. Used by every trainable skill.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from slmstack.errors import DataWarning, SkillError
from slmstack.models.encoder import autocast
from slmstack.progress import progress


@dataclass(frozen=True)
class LoopConfig:
    """Schedule of one fine-tuning run."""

    epochs: int
    learning_rate: float
    head_learning_rate: float
    warmup_ratio: float
    weight_decay: float
    patience: int
    precision: str
    max_grad_norm: float = 1.0

    @classmethod
    def of(cls, owner: object) -> LoopConfig:
        """The schedule from an estimator's hyper-parameters of the same names."""
        names = ("epochs", "learning_rate", "head_learning_rate", "warmup_ratio",
                 "weight_decay", "patience", "precision")  # fmt: skip
        return cls(**{name: getattr(owner, name) for name in names})


@dataclass
class LoopResult:
    """What happened: the metric after each epoch, the best epoch and the wall time.

    ``best_epoch`` 0 means no epoch beat the weights training started from, which were
    kept (``start_metric`` is their validation metric).
    """

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_metric: float = -math.inf
    start_metric: float = -math.inf
    seconds: float = 0.0
    stopped_early: bool = False


def _param_groups(
    model: nn.Module, head_prefixes: Sequence[str], cfg: LoopConfig
) -> list[dict[str, Any]]:
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_head = name.startswith(tuple(head_prefixes))
        no_decay = param.ndim < 2 or "LayerNorm" in name or "norm" in name.lower()
        groups.setdefault((is_head, no_decay), []).append(param)
    return [
        {
            "params": params,
            "lr": cfg.head_learning_rate if is_head else cfg.learning_rate,
            "weight_decay": 0.0 if no_decay else cfg.weight_decay,
        }
        for (is_head, no_decay), params in groups.items()
    ]


def train_loop(
    model: nn.Module,
    *,
    make_batches: Callable[[int], Iterable[Any]],
    steps_per_epoch: int,
    loss_fn: Callable[[Any], torch.Tensor],
    evaluate: Callable[[], float],
    cfg: LoopConfig,
    head_prefixes: Sequence[str] = ("head",),
    description: str = "fine-tune",
) -> LoopResult:
    """Train ``model`` in place and leave it holding the best validation weights.

    ``make_batches(epoch)`` yields the batches of one epoch (shuffled by the caller with
    a seeded generator, so runs are reproducible); ``evaluate()`` returns the validation
    metric, higher is better. The weights training starts from are a candidate too: when
    every epoch scores below them (a learning rate too high), they are kept, with a
    warning.

    Raises:
        SkillError: the loss became NaN or infinite (training diverged). On that or any
            other error (Ctrl-C too) the model is given back its starting weights.
    """
    result = LoopResult()
    optimizer = torch.optim.AdamW(_param_groups(model, head_prefixes, cfg))
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = int(cfg.warmup_ratio * total)

    def lr_lambda(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    initial = copy.deepcopy(model.state_dict())
    best_state = initial
    model.eval()
    result.start_metric = evaluate()
    start = time.perf_counter()
    bad_epochs = 0
    try:  # a failure (divergence, Ctrl-C) leaves the model as it was, not half-trained
        with progress() as bar:
            task = bar.add_task(description, total=total, info="")
            for epoch in range(cfg.epochs):
                model.train()
                running = 0.0
                for step, batch in enumerate(make_batches(epoch), start=1):
                    with autocast(cfg.precision):
                        loss = loss_fn(batch)
                    if not torch.isfinite(loss.detach()):
                        raise SkillError(
                            f"training diverged at epoch {epoch + 1}, step {step}: the loss is "
                            f"{float(loss.detach())}. Lower the learning rate (--lr, now "
                            f"{cfg.learning_rate:g}) and train again; nothing was saved"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    running += float(loss.detach())
                    bar.update(task, advance=1, info=f"epoch {epoch + 1} loss {running / step:.4f}")
                model.eval()
                metric = evaluate()
                result.history.append(
                    {
                        "epoch": epoch + 1,
                        "train_loss": running / max(1, steps_per_epoch),
                        "val_metric": metric,
                        "seconds": time.perf_counter() - start,
                    }
                )
                bar.update(task, info=f"epoch {epoch + 1} val {metric:.4f}")
                if metric > result.best_metric:
                    result.best_metric = metric
                    result.best_epoch = epoch + 1
                    best_state = copy.deepcopy(model.state_dict())
                    bad_epochs = 0
                else:
                    bad_epochs += 1
                    if bad_epochs >= cfg.patience:
                        result.stopped_early = epoch + 1 < cfg.epochs
                        break
    except BaseException:
        model.load_state_dict(initial)
        model.eval()
        raise
    if result.start_metric > result.best_metric:
        warnings.warn(
            f"{description}: every epoch scored below the weights it started from on "
            f"validation ({result.best_metric:.4f} at best, against {result.start_metric:.4f}); "
            f"those were kept. Lower the learning rate (now {cfg.learning_rate:g}), or check "
            "what training pulls toward (a distillation teacher's labels, say)",
            DataWarning,
            stacklevel=2,
        )
        best_state, result.best_epoch, result.best_metric = initial, 0, result.start_metric
    model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - start
    return result
