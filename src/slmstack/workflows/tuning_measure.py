"""Measure each tier of a workflow's cascade once, on labelled validation data.

Every ``skill`` tier predicts all the texts in batches (one call per batch, as a served
workflow would); its answers are compared with the gold labels, and each prediction is
costed by ``cost_of`` (tokens for a priced API, measured seconds × the machine's hourly
price for a local model). An ``escalate`` tier that hands off to a person has no answer
to score: it counts as correct at the per-item cost the caller names (``human_cost``),
since a person's time is the price of that tier. The measurements are cached in a JSON
file keyed by the tier's skill, its parameters and the data, so re-tuning with another
target costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slmstack.errors import ConfigError, DataError, DataWarning
from slmstack.types import Prediction
from slmstack.workflows import templates
from slmstack.workflows.base import Step, skill_labels
from slmstack.workflows.engine import Workflow
from slmstack.workflows.steps.cascade import CascadeStep
from slmstack.workflows.steps.escalate import EscalateStep
from slmstack.workflows.steps.skill import SkillStep
from slmstack.workflows.tuning import TierMeasure

CostOf = Callable[[str, Prediction, float], int]
"""Nano-dollars of one prediction of the named skill, given its share of batch seconds."""


def find_cascade(workflow: Workflow, cascade_id: str | None) -> CascadeStep:
    """The cascade with ``cascade_id`` (or the only one) among the workflow's steps."""
    found: list[CascadeStep] = []

    def walk(node: Step) -> None:
        if isinstance(node, CascadeStep):
            found.append(node)
        for child in node.children():
            walk(child)

    for step in [*workflow.steps, *(s for block in workflow.blocks.values() for s in block)]:
        walk(step)
    # A cascade without an id cannot be named with --cascade: say which one it is by its
    # tiers, and how to give it an id.
    listed = "; ".join(
        repr(c.id) if c.id else f"one with no id (tiers {', '.join(t.name for t in c.tiers)})"
        for c in found
    )
    name_it = (
        "give the cascade to tune an `id:` in the workflow file (`cascade: {id: triage, ...}`) "
        "and pass it as --cascade ID"
    )
    if cascade_id is not None:
        found = [c for c in found if c.id == cascade_id]
    if not found:
        if cascade_id:
            raise ConfigError(
                f"workflow {workflow.name!r} has no cascade with id {cascade_id!r}; its "
                f"cascades: {listed or 'none'}. Pass one of their ids, or {name_it}"
            )
        raise ConfigError(
            f"workflow {workflow.name!r} has no cascade step; tuning sets a cascade's "
            "thresholds, so add a `cascade:` step"
        )
    if len(found) > 1:
        raise ConfigError(
            f"workflow {workflow.name!r} has {len(found)} cascades: {listed}. To tune one, "
            f"{name_it}"
        )
    return found[0]


def measure_tiers(
    workflow: Workflow,
    cascade: CascadeStep,
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    cost_of: CostOf,
    human_cost_nano_usd: int | None = None,
    cache: Path | None = None,
    batch_size: int = 64,
    cost_key: str = "",
) -> list[TierMeasure]:
    """One :class:`TierMeasure` per tier of ``cascade`` on ``texts`` with gold ``labels``.

    ``cache`` keeps each skill tier's measure, keyed by the skill (its parameters and
    provenance), the texts and ``cost_key`` (what ``cost_of`` prices by: the price table's
    version and the machine), so tuning again with another target costs nothing.
    """
    _check_labels(workflow, cascade, labels)  # before any tier is measured (and paid for)
    # Every tier is checked before any is measured: a refusal must not come after a paid
    # tier has run on every text.
    inputs: list[Sequence[str] | None] = []  # what each skill tier reads; None: a person
    for i, tier in enumerate(cascade.tiers):
        if isinstance(tier, SkillStep):
            inputs.append(_tier_texts(tier, i, cascade, texts))
        elif isinstance(tier, EscalateStep) and tier.to != "human":
            raise ConfigError(
                f"tier {i} of cascade {cascade.id!r} escalates to the LLM {tier.to!r}; tuning "
                "cannot score an LLM's answers without calling it on every text (at its price), "
                "so it measures skill tiers and a final hand-off to a person only. Tune a copy "
                "of the workflow whose last tier is `escalate: {to: human}`, or make the LLM a "
                "skill tier"
            )
        elif isinstance(tier, EscalateStep) and i == len(cascade.tiers) - 1:
            if human_cost_nano_usd is None:
                raise ConfigError(
                    "the cascade's last tier hands off to a person; say what a hand-off costs "
                    "(--human-cost DOLLARS), since it is that tier's price"
                )
            inputs.append(None)
        else:
            raise ConfigError(
                f"tier {i} of cascade {cascade.id!r} is a {tier.kind!r} step; tuning measures "
                "skill tiers (and a final hand-off to a person)"
            )
    out = []
    for tier, seen in zip(cascade.tiers, inputs, strict=True):
        if isinstance(tier, SkillStep) and seen is not None:
            out.append(_measure_skill(workflow, tier.use, seen, labels, cost_of, cache,
                                      batch_size, cost_key))  # fmt: skip
        else:
            n = len(texts)
            out.append(TierMeasure(f"escalate ({tier.name})", np.ones(n, bool),
                                   np.ones(n), np.zeros(n, bool),
                                   np.full(n, human_cost_nano_usd, dtype=np.int64)))  # fmt: skip
    return out


def _tier_texts(
    tier: SkillStep, i: int, cascade: CascadeStep, texts: Sequence[str]
) -> Sequence[str]:
    """What the tier's skill reads at run time: the text, or its ``input:`` template filled."""
    if tier.input is None:
        return texts
    parts = templates.parse(tier.input)
    earlier = [p for p in parts if isinstance(p, templates.Ref) and p.step != "input"]
    if earlier:
        named = ", ".join(
            "{" + ".".join(b for b in (r.step, r.field, r.key) if b) + "}" for r in earlier
        )
        raise ConfigError(
            f"tier {i} of cascade {cascade.id!r} reads the template {tier.input!r}, whose "
            f"{named} are outputs of earlier steps; tuning measures a tier on the data's texts "
            "alone, so it cannot fill them. Tune a copy of the workflow whose tier reads "
            "{input} only"
        )
    return [templates.render(parts, text, {}) for text in texts]


def _check_labels(workflow: Workflow, cascade: CascadeStep, labels: Sequence[str]) -> None:
    """Refuse gold labels no skill tier can produce; warn about some of them."""
    known = [skill_labels(workflow.skills[t.use]) for t in cascade.tiers
             if isinstance(t, SkillStep)]  # fmt: skip
    if not known or any(k is None for k in known):  # a skill that does not say
        return
    producible = set().union(*(k for k in known if k is not None))
    unseen = Counter(label for label in labels if label not in producible)
    if not unseen:
        return
    shown = ", ".join(
        f"{lab!r} ({n} text{'' if n == 1 else 's'})" for lab, n in sorted(unseen.items())[:10]
    )
    if sum(unseen.values()) == len(labels):
        raise DataError(
            f"none of the data's labels ({', '.join(map(repr, sorted(unseen)[:10]))}) is one "
            f"the cascade's skills produce ({', '.join(map(repr, sorted(producible)[:10]))}), "
            "so every answer would count as wrong. Relabel the data with the skills' labels, "
            "or check --label-column"
        )
    warnings.warn(
        f"labels no skill tier of the cascade produces: {shown}; a skill's answer to those "
        "texts counts as wrong, a hand-off to a person as right",
        DataWarning,
        stacklevel=2,
    )


def _measure_skill(
    workflow: Workflow, name: str, texts: Sequence[str], labels: Sequence[str],
    cost_of: CostOf, cache: Path | None, batch_size: int, cost_key: str,
) -> TierMeasure:  # fmt: skip
    skill = workflow.skills[name]
    params: dict[str, Any] = getattr(skill, "get_params", dict)()
    # What the skill learned (a retrained skill has other provenance) and how calls are
    # priced are in the key too, so a cached measure is never one of another model or price.
    learned = getattr(skill, "provenance_", None)
    key = hashlib.sha256(
        json.dumps([name, type(skill).__name__, params, learned, cost_key, list(texts),
                    list(labels)], sort_keys=True, default=repr).encode()
    ).hexdigest()[:16]  # fmt: skip
    cached = _read_cache(cache, key)
    if cached is not None and len(cached.correct) == len(texts):
        return cached
    # A measure cut short (a paid tier that failed half-way) goes on where it stopped:
    # each batch is written to the cache as it is measured.
    done = 0 if cached is None else len(cached.correct)
    correct: list[Any] = [] if cached is None else cached.correct.tolist()
    confidence: list[Any] = [] if cached is None else cached.confidence.tolist()
    abstained: list[Any] = [] if cached is None else cached.abstained.tolist()
    cost: list[Any] = [] if cached is None else cached.cost_nano_usd.tolist()

    def measured() -> TierMeasure:
        return TierMeasure(name, np.array(correct, bool), np.array(confidence, float),
                           np.array(abstained, bool), np.array(cost, np.int64))  # fmt: skip

    for start in range(done, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        began = time.perf_counter()
        got = skill.predict(chunk)
        per_item = (time.perf_counter() - began) / len(chunk)
        for p, gold in zip(got, labels[start : start + len(chunk)], strict=True):
            correct.append(p.label == gold)
            confidence.append(p.confidence)
            abstained.append(p.abstained is not None)
            cost.append(cost_of(name, p, per_item))
        _write_cache(cache, key, measured())
    return measured()


def _read_cache(cache: Path | None, key: str) -> TierMeasure | None:
    if cache is None or not cache.is_file():
        return None
    try:
        entry = json.loads(cache.read_text(encoding="utf-8")).get(key)
        if entry is None:
            return None
        measure = TierMeasure(entry["name"], np.array(entry["correct"], bool),
                              np.array(entry["confidence"], float),
                              np.array(entry["abstained"], bool),
                              np.array(entry["cost"], np.int64))  # fmt: skip
        if len({len(measure.correct), len(measure.confidence), len(measure.abstained),
                len(measure.cost_nano_usd)}) != 1:  # fmt: skip
            raise ValueError("its lists differ in length")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(
            f"the tuning cache is damaged ({exc}); delete it (the tiers will be measured again)",
            path=cache,
        ) from None
    return measure


def _write_cache(cache: Path | None, key: str, m: TierMeasure) -> None:
    if cache is None:
        return
    body = json.loads(cache.read_text(encoding="utf-8")) if cache.is_file() else {}
    body[key] = {"name": m.name, "correct": m.correct.tolist(),
                 "confidence": m.confidence.tolist(), "abstained": m.abstained.tolist(),
                 "cost": m.cost_nano_usd.tolist()}  # fmt: skip
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(body), encoding="utf-8")
    tmp.replace(cache)
