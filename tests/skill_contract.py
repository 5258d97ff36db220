"""The contract every skill must satisfy; ``test_contract.py`` runs it over every
registered skill kind.

Usage::

    from skill_contract import check_skill_contract

    check_skill_contract(lambda: MySkill(seed=0), TRAIN, TEXTS, tmp_path)

``make`` builds an unfitted skill; ``train`` is whatever its ``fit`` accepts; ``texts``
are inputs for ``predict``. ``compare`` turns a Prediction into what must match exactly
after save/load and between runs (defaults to label, spans, text and rounded confidence).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from slmstack import ConfigError, NotFittedError, Prediction, Skill, load


def default_key(p: Prediction) -> tuple[Any, ...]:
    return (
        p.label,
        round(p.confidence, 4),
        tuple((s.label, s.start, s.end) for s in p.spans),
        p.text,
        p.abstained,
    )


def check_skill_contract(
    make: Callable[[], Skill],
    train: Any,
    texts: Sequence[str],
    tmp_path: Path,
    *,
    compare: Callable[[Prediction], Any] = default_key,
    check_determinism: bool = True,
) -> Skill:
    # predict before fit is a clear error, not an AttributeError
    with pytest.raises(NotFittedError, match="fit"):
        make().predict(list(texts))

    skill = make()
    assert skill.fit(train) is skill, "fit must return self"
    preds = check_fitted_contract(skill, texts, tmp_path, compare=compare)
    if check_determinism:
        again = make().fit(train)
        assert [compare(p) for p in again.predict(list(texts))] == [compare(p) for p in preds]
    return skill


def check_fitted_contract(
    skill: Skill,
    texts: Sequence[str],
    tmp_path: Path,
    *,
    compare: Callable[[Prediction], Any] = default_key,
) -> list[Prediction]:
    """The contract of a fitted skill (also for skills made otherwise, e.g. exported)."""
    preds = skill.predict(list(texts))
    assert len(preds) == len(texts)
    assert all(isinstance(p, Prediction) for p in preds)
    assert skill.predict([]) == []

    # batch equals one-by-one
    one_by_one = [skill.predict([t])[0] for t in texts]
    assert [compare(p) for p in one_by_one] == [compare(p) for p in preds]

    # save → load round-trip predicts exactly the same, through the generic loader too
    folder = skill.save(tmp_path / "skill")
    assert (folder / "config.json").is_file()
    assert (folder / "model_card.md").is_file()
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pkl")), "no pickles"
    reloaded = load(folder)
    assert type(reloaded) is type(skill)
    assert [compare(p) for p in reloaded.predict(list(texts))] == [compare(p) for p in preds]

    # empty and whitespace-only texts abstain; they never get a confident answer
    blank = skill.predict(["", "   \n"])
    assert [p.abstained for p in blank] == ["empty_input", "empty_input"]
    assert all(p.confidence == 0.0 and p.label is None for p in blank)

    # the class declares what it produces, what it reads and how it is evaluated
    cls = type(skill)
    assert cls.produces, f"{cls.__name__}.produces is empty"
    assert cls.trains_on_nothing or cls.read_training_data is not Skill.read_training_data
    assert cls.evaluate is not Skill.evaluate, f"{cls.__name__} has no evaluate()"

    # the estimator contract: parameters round-trip and clone gives an unfitted copy
    from sklearn.base import clone

    copy = clone(skill)
    assert copy.get_params() == skill.get_params() and not copy.is_fitted
    assert reloaded.get_params() == {k: v for k, v in skill.get_params().items()}, (
        "load must rebuild the same parameters"
    )

    # a single string instead of a list is refused with a hint
    with pytest.raises(ConfigError, match=r"takes a list of texts.*predict\(\[text\]\)"):
        skill.predict(texts[0])  # type: ignore[arg-type]
    return preds
