"""Training internals of :class:`~slmstack.skills.classifier.TextClassifier`.

The network (encoder → mean pooling → L2 normalisation → dropout → linear head), the
linear probe that fits the head on frozen sentence vectors, full fine-tuning with
length-bucketed batches, and the batched forward pass over many texts. Kept apart from
the skill so the public class stays small.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import nn

from slmstack.models.bf16 import inference_module
from slmstack.models.encoder import autocast, length_batches, mean_pool, pad_batch
from slmstack.progress import progress
from slmstack.training.batching import bucketed_batches
from slmstack.training.loop import LoopConfig, LoopResult, train_loop

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class SoftTargets:
    """A teacher's class distributions for the training texts, softened by ``temperature``."""

    probs: NDArray[np.float32]  # (n_texts, n_labels), rows sum to 1, student label order
    weight: float  # share of the distillation term in the loss
    temperature: float

    def describe(self, teacher: object) -> dict[str, Any]:
        """What the student's config records about its teacher."""
        return {"skill": type(teacher).__name__, "base": str(getattr(teacher, "base", "")),
                "weight": self.weight, "temperature": self.temperature}  # fmt: skip


class SoftTeacher(Protocol):
    """What distillation needs of a teacher: its labels and class probabilities."""

    @property
    def classes_(self) -> Sequence[str]: ...

    def predict_proba(self, texts: Sequence[str]) -> NDArray[np.float64]: ...


def soft_targets(
    teacher: SoftTeacher, texts: Sequence[str], classes: Sequence[str], *,
    weight: float, temperature: float,
) -> SoftTargets:  # fmt: skip
    """The teacher's probabilities for ``texts``, columns in ``classes`` order, softened.

    ``p ** (1 / T)`` renormalised equals ``softmax(logits / T)`` for the teacher's logits.
    Labels the teacher lacks are an error: the student would learn they never occur.
    """
    from slmstack.errors import DataError

    have = {str(c): i for i, c in enumerate(teacher.classes_)}
    missing = [c for c in classes if c not in have]
    if missing:
        shown = ", ".join(repr(c) for c in missing[:5])
        raise DataError(
            f"the teacher does not know {len(missing)} of the data's labels ({shown}); "
            "train the teacher on the same label set, or drop those rows."
        )
    probs = np.asarray(teacher.predict_proba(list(texts)), dtype=np.float64)
    if probs.shape != (len(texts), len(have)):
        raise DataError(
            f"the teacher returned probabilities of shape {probs.shape}, expected "
            f"({len(texts)}, {len(have)}); it is not a single-label classifier."
        )
    probs = probs[:, [have[c] for c in classes]]
    logp = np.log(np.clip(probs, 1e-12, None)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    soft = np.exp(logp)
    soft /= soft.sum(axis=1, keepdims=True)
    return SoftTargets(soft.astype(np.float32), weight, temperature)


class ClassifierNet(nn.Module):
    """Encoder → mean pooling → (L2 normalise) → dropout → linear head."""

    def __init__(self, encoder: nn.Module, n_labels: int, *, normalize: bool, dropout: float):
        super().__init__()
        self.encoder = encoder
        self.normalize = normalize
        self.dropout = nn.Dropout(dropout)
        hidden = int(encoder.config.hidden_size)  # type: ignore[union-attr,arg-type]
        self.head = nn.Linear(hidden, n_labels)

    def embed(
        self, ids: torch.Tensor, mask: torch.Tensor, encoder: nn.Module | None = None
    ) -> torch.Tensor:
        """Pooled (and normalised) sentence vectors (``encoder``: a stand-in, e.g. bf16 twin)."""
        run = self.encoder if encoder is None else encoder
        hidden = run(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = mean_pool(hidden, mask)
        out: torch.Tensor = F.normalize(pooled, dim=-1) if self.normalize else pooled
        return out

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Class logits (float32 even under autocast)."""
        logits: torch.Tensor = self.head(self.dropout(self.embed(ids, mask)).float())
        return logits


def grow_head(old: nn.Linear, n_new: int) -> nn.Linear:
    """A head with ``n_new`` more rows: old rows kept, new ones start at the lowest bias."""
    head = nn.Linear(old.in_features, old.out_features + n_new)
    with torch.no_grad():
        head.weight[: old.out_features] = old.weight
        head.bias[: old.out_features] = old.bias
        head.weight[old.out_features :] = 0.0
        head.bias[old.out_features :] = old.bias.min()
    return head


def fit_probe(
    head: nn.Linear,
    x: NDArray[np.float32],
    y: NDArray[np.int64],
    *,
    c: float,
    seed: int,
    warm: bool,
) -> None:
    """Fit ``head`` in place as multinomial logistic regression on sentence vectors ``x``.

    With ``warm=True`` (resume) the current head is the starting point and the rows of
    labels absent from ``y`` are kept as they are.
    """
    from sklearn.linear_model import LogisticRegression

    n_classes = head.out_features
    present = np.unique(y)
    lr = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    if warm and len(present) > 2:
        lr.set_params(warm_start=True)
        lr.coef_ = head.weight.detach().numpy()[present].astype(np.float64)
        lr.intercept_ = head.bias.detach().numpy()[present].astype(np.float64)
    lr.fit(x, y)
    coef = np.zeros((n_classes, x.shape[1]), dtype=np.float32)
    # Labels absent from this data keep a very low bias, so they are never predicted
    # by accident, unless they were trained before (resume keeps their rows).
    bias = np.full(n_classes, -1e4, dtype=np.float32)
    if warm:
        coef[:] = head.weight.detach().numpy()
        bias[:] = head.bias.detach().numpy()
    binary = len(present) <= 2
    fitted = np.vstack([-lr.coef_[0], lr.coef_[0]]) / 2 if binary else lr.coef_
    fitted_b = np.array([-lr.intercept_[0], lr.intercept_[0]]) / 2 if binary else lr.intercept_
    coef[present] = fitted
    bias[present] = fitted_b
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(coef))
        head.bias.copy_(torch.from_numpy(bias))


def finetune(
    net: ClassifierNet,
    train_ids: Sequence[Sequence[int]],
    y_train: NDArray[np.int64],
    *,
    evaluate: Callable[[], float],
    cfg: LoopConfig,
    batch_size: int,
    pad_id: int,
    seed: int,
    label_smoothing: float,
    description: str,
    soft: SoftTargets | None = None,
) -> LoopResult:
    """Fine-tune the whole network (encoder and head) on token ids and label indices.

    Batches group texts of similar length (:func:`bucketed_batches`), reshuffled each
    epoch from ``seed + epoch``, so runs are reproducible. With ``soft`` (a teacher's
    targets, one row per training text) the loss is knowledge distillation (Hinton et al.,
    2015): ``(1 - weight) * CE(gold) + weight * T² * KL(teacher_T || student_T)``.
    """
    lengths = [len(x) for x in train_ids]
    steps = (len(train_ids) + batch_size - 1) // batch_size
    targets = torch.from_numpy(soft.probs) if soft is not None else torch.empty(0)

    def make_batches(epoch: int) -> Iterator[Batch]:
        for idx in bucketed_batches(lengths, batch_size, seed=seed + epoch):
            ids, mask = pad_batch([train_ids[i] for i in idx], pad_id)
            rows = torch.from_numpy(np.asarray(idx, dtype=np.int64))
            yield ids, mask, torch.from_numpy(y_train[idx]), rows

    def loss_fn(batch: Batch) -> torch.Tensor:
        ids, mask, y, rows = batch
        logits = net(ids, mask)
        gold = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        if soft is None:
            return gold
        t = soft.temperature
        student = F.log_softmax(logits / t, dim=-1)
        kd = F.kl_div(student, targets[rows], reduction="batchmean") * (t * t)
        return (1.0 - soft.weight) * gold + soft.weight * kd

    return train_loop(
        net,
        make_batches=make_batches,
        steps_per_epoch=steps,
        loss_fn=loss_fn,
        evaluate=evaluate,
        cfg=cfg,
        description=description,
    )


def forward_all(
    net: ClassifierNet,
    input_ids: Sequence[Sequence[int]],
    *,
    what: Literal["embed", "logits"],
    pad_id: int,
    batch_size: int,
    precision: str,
    desc: str | None = None,
) -> NDArray[np.float32]:
    """Sentence vectors or logits of every text, in input order, without gradients.

    Texts are batched by length (less padding); only long, named steps (``desc``) show a
    progress bar, so ``predict()`` on a few texts stays quiet.
    """
    out: list[NDArray[np.float32]] = [np.empty(0, np.float32)] * len(input_ids)
    lengths = [len(x) for x in input_ids]
    net.eval()
    encoder = inference_module(net.encoder, precision)
    with progress() as bar, torch.inference_mode():
        task = bar.add_task(desc, total=len(lengths), info="") if desc else None
        for idx in length_batches(lengths, batch_size):
            ids, mask = pad_batch([input_ids[i] for i in idx], pad_id)
            with autocast(precision):
                vec = net.embed(ids, mask, encoder)
                if what == "logits":
                    vec = net.head(vec.float())
            arr = vec.float().numpy()
            for row, i in enumerate(idx):
                out[i] = arr[row]
            if task is not None:
                bar.update(task, advance=len(idx))
    return np.stack(out)


def validation_metrics(
    logits: NDArray[np.float32], y: NDArray[np.int64], temperature: float
) -> dict[str, float]:
    """Accuracy, macro-F1 and ECE before and after temperature scaling, on validation."""
    from sklearn.metrics import f1_score

    from slmstack.training.calibration import expected_calibration_error, softmax

    raw = softmax(logits)
    cal = softmax(logits, temperature)
    pred = cal.argmax(axis=1)
    return {
        "val_accuracy": float((pred == y).mean()),
        "val_macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
        "val_ece_before_calibration": expected_calibration_error(raw, y),
        "val_ece": expected_calibration_error(cal, y),
        "temperature": temperature,
    }
