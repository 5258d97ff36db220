"""Parameter checks of :class:`~slmstack.skills.classifier.TextClassifier`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from slmstack.errors import ConfigError

if TYPE_CHECKING:
    from slmstack.skills.classifier import TextClassifier


def check_params(clf: TextClassifier) -> None:
    """Raise :class:`ConfigError` naming the first parameter out of its range."""

    def bad(name: str, allowed: str) -> ConfigError:
        return ConfigError(
            f"The {name!r} parameter of TextClassifier must be {allowed}. "
            f"Got {getattr(clf, name)!r} instead."
        )

    if clf.strategy not in ("head", "finetune"):
        raise bad("strategy", "'head' or 'finetune'")
    if clf.metric not in ("accuracy", "macro_f1"):
        raise bad("metric", "'accuracy' or 'macro_f1'")
    if clf.precision not in ("fp32", "bf16"):
        raise bad("precision", "'fp32' or 'bf16'")
    for name in ("epochs", "batch_size", "top_k", "max_length", "patience"):
        if not isinstance(getattr(clf, name), int) or getattr(clf, name) < 1:
            raise bad(name, "an int >= 1")
    for name in ("learning_rate", "head_learning_rate", "head_c"):
        if not getattr(clf, name) > 0:
            raise bad(name, "a float in (0, inf)")
    if not 0.0 < clf.val_fraction < 1.0:
        raise bad("val_fraction", "a float in (0, 1)")
    if not 0.0 <= clf.warmup_ratio < 1.0:
        raise bad("warmup_ratio", "a float in [0, 1)")
    if not 0.0 <= clf.label_smoothing < 1.0:
        raise bad("label_smoothing", "a float in [0, 1)")
    if not 0.0 <= clf.scope_alpha < 1.0:
        raise bad("scope_alpha", "a float in [0, 1) (0 turns out-of-scope flags off)")
