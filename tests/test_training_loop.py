"""The shared fine-tuning loop: the starting weights are a candidate, divergence stops it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slmstack.errors import DataWarning, SkillError
from slmstack.training.loop import LoopConfig, train_loop

X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]])
Y = torch.tensor([0, 1, 0, 1])


def fitted() -> nn.Module:
    """A head that already separates the two classes, as a probe leaves it."""
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[3.0, -3.0], [-3.0, 3.0]]))
        model.bias.zero_()
    return model


def run(model: nn.Module, lr: float, loss_fn=None) -> object:
    cfg = LoopConfig(epochs=3, learning_rate=lr, head_learning_rate=lr, warmup_ratio=0.0,
                     weight_decay=0.0, patience=3, precision="fp32")  # fmt: skip

    def evaluate() -> float:
        with torch.no_grad():
            return float((model(X).argmax(1) == Y).float().mean())

    def wrong_way(batch):  # a loss that pushes the head to the opposite labels
        return nn.functional.cross_entropy(model(X), 1 - Y)

    return train_loop(model, make_batches=lambda epoch: [None], steps_per_epoch=1,
                      loss_fn=loss_fn or wrong_way, evaluate=evaluate, cfg=cfg,
                      head_prefixes=("",))  # fmt: skip


def test_the_starting_weights_are_kept_when_every_epoch_is_worse():
    model = fitted()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(DataWarning, match="every epoch scored below the weights it started from"):
        result = run(model, lr=5.0)
    assert result.start_metric == 1.0 and result.best_epoch == 0 and result.best_metric == 1.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [h["epoch"] for h in result.history] == [1, 2, 3]  # the epochs were still run


def test_an_epoch_that_beats_the_start_is_kept():
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-1.0, 1.0], [1.0, -1.0]]))  # wrong everywhere
        model.bias.zero_()
    right = lambda batch: nn.functional.cross_entropy(model(X), Y)  # noqa: E731
    result = run(model, lr=1.0, loss_fn=right)
    assert result.start_metric == 0.0 and result.best_epoch >= 1 and result.best_metric == 1.0


def test_a_loss_that_is_not_finite_stops_training_with_the_fix():
    model = fitted()
    nan = lambda batch: model(X).sum() * float("nan")  # noqa: E731
    with pytest.raises(SkillError, match=r"training diverged at epoch 1, step 1.*Lower the "
                       r"learning rate \(--lr, now 0.1\)"):  # fmt: skip
        run(model, lr=0.1, loss_fn=nan)


def test_training_that_diverges_later_gives_the_model_back_its_starting_weights():
    model = fitted()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []

    def late_nan(batch):  # one good step changes the weights, then the loss blows up
        calls.append(1)
        loss = nn.functional.cross_entropy(model(X), 1 - Y)
        return loss if len(calls) == 1 else loss * float("nan")

    with pytest.raises(SkillError, match="training diverged at epoch 2, step 1"):
        run(model, lr=0.5, loss_fn=late_nan)
    # the caller retries at a lower rate from where it started, not from a half-trained model
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
