"""``slmstack distill --task T``: a task's student, trained on the LLM's recorded answers.

The method: the task's examples (:func:`~slmstack.proxy.taskdata.task_data`) are split
once, with a fixed seed, into a training part and a held-out part, as
:func:`slmstack.distill.distill` splits teacher labels. The student learns the training
part (less the texts of a label the LLM gave only once there, which no classifier
learns); the held-out part measures how often it agrees with the LLM, the way the shadow
will score it: label equality for a classification; for an extraction, field-level
precision, recall and F1 against the LLM's values (exact after normalisation, as
``slmstack eval`` scores extractors) and the share of documents where every field
agrees. The teacher cost is what the recorded calls already cost (nothing is bought:
the labels are the traffic's answers), in a :class:`~slmstack.distill.DistillReport`.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from slmstack.distill import DistillReport
from slmstack.errors import ConfigError, DataError
from slmstack.proxy.taskdata import TaskData, field_specs
from slmstack.types import Example

MIN_EXAMPLES = 10  # fewer cannot be split into a training and a held-out part worth scoring
MIN_PER_LABEL = 2  # the classifiers' floor (slmstack.data.validation.validate_examples)
# Drop reasons that are the LLM's answer's fault (the report's ``teacher_abstained``).
UNUSABLE = ("empty answer", "answer not in the label set", "answer not a JSON object",
            "a field value is not in the text")  # fmt: skip


def student_for(kind: str, name: str | None, params: Mapping[str, Any], data: TaskData) -> Any:
    """The untrained student of a task: ``name`` (a skill kind) or the kind's default.

    A classification defaults to ``TextClassifier``, an extraction to ``FieldExtractor``
    (whose schema, unless ``params`` gives one, is the task's keys with the types their
    values read as).

    Raises:
        ConfigError: the skill does not produce what the task needs, or a bad parameter.
    """
    from slmstack import registry

    name = name or ("TextClassifier" if kind == "classification" else "FieldExtractor")
    cls = registry.skills.get(registry.skills.resolve_name(name))
    needs = "label" if kind == "classification" else "data"
    if needs not in cls.produces:
        raise ConfigError(
            f"{name} does not produce a {needs}, which a {kind} task needs; pass "
            f"--student {'TextClassifier' if needs == 'label' else 'FieldExtractor'}"
        )
    params = dict(params)
    if kind == "extraction":
        params.setdefault("schema", dict(data.field_types))
    cls.check_params(params)
    return cls(**params)


def _split(n: int, held_out: float, seed: int) -> tuple[list[int], list[int]]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_held = max(1, round(held_out * n))
    return sorted(order[n_held:]), sorted(order[:n_held])


def distill_task(
    data: TaskData, student: Any, *, held_out: float = 0.2, seed: int = 0
) -> DistillReport:
    """Train ``student`` on ``data`` and measure its agreement with the LLM.

    Returns:
        The report; ``extra`` holds the task, the calls used and dropped (by reason), the
        masking, and for an extraction the field-level agreement.

    Raises:
        DataError: fewer than ten examples, a bad ``held_out``, or one label only.
    """
    if not 0.0 < held_out < 1.0:
        raise DataError(f"held_out must be in (0, 1); got {held_out}")
    n = len(data.texts)
    if n < MIN_EXAMPLES:
        raise DataError(
            f"task {data.task.task_id} has {n} usable distinct texts; distillation needs at "
            f"least {MIN_EXAMPLES}. Record more of its traffic through `slmstack proxy`"
        )
    train, held = _split(n, held_out, seed)
    extra: dict[str, Any] = {
        "task_id": data.task.task_id, "kind": data.task.kind, "calls": data.calls,
        "examples": n, "dropped": {k: v for k, v in sorted(data.dropped.items()) if v},
        "masking": data.masking, "unpriced_calls": data.unpriced,
    }  # fmt: skip
    if data.task.kind == "classification":
        # A label the LLM gave once cannot be learnt (the classifiers refuse it: one example
        # cannot be both trained on and validated); its texts are left out of training and
        # counted, and a held-out text of it counts as a disagreement, as it will in the shadow.
        counts = Counter(data.targets[i] for i in train)
        rare = {label for label, k in counts.items() if k < MIN_PER_LABEL}
        train = [i for i in train if data.targets[i] not in rare]
        extra["rare_labels_left_out"] = {"labels": len(rare), "texts": sum(counts[x] for x in rare)}
        if len({data.targets[i] for i in train}) < 2:
            raise DataError(
                f"the LLM gave fewer than two labels {MIN_PER_LABEL} times or more among the "
                f"training texts of task {data.task.task_id}; a classifier needs two. Record "
                "more of its traffic"
            )
        student.fit([Example(data.texts[i], data.targets[i]) for i in train])
        preds = student.predict([data.texts[i] for i in held])
        agree = sum(p.label == data.targets[i] for p, i in zip(preds, held, strict=True))
        extra["labels"] = len(set(data.targets))
    else:
        agree, extra["fields"] = _fit_fields(data, student, train, held)
    cost = Decimal(data.cost_nusd).scaleb(-9)
    return DistillReport(
        texts=n, train_texts=len(train), held_out_texts=len(held), teacher_labels_bought=0,
        teacher_abstained=sum(data.dropped[why] for why in UNUSABLE),
        dropped_low_confidence=0, agreement_with_teacher=agree / len(held),
        student_gold_accuracy=None, teacher_gold_accuracy=None, teacher_cost_usd=cost,
        teacher_cost_this_run_usd=Decimal(0), extra=extra,
    )  # fmt: skip


def _fit_fields(
    data: TaskData, student: Any, train: list[int], held: list[int]
) -> tuple[int, dict[str, Any]]:
    """Fit a field extractor; ``(documents agreeing, field-level report)`` on ``held``."""
    from slmstack.data.fields import FieldExample
    from slmstack.evaluation.extraction import field_metrics

    def example(i: int) -> FieldExample:
        return FieldExample(data.texts[i], data.targets[i], source=f"call #{i + 1}")

    student.fit([example(i) for i in train])
    specs = getattr(student, "specs_", None) or field_specs(data.field_types)
    gold = [example(i) for i in held]
    preds = student.predict([ex.text for ex in gold])
    agree = 0
    for ex, pred in zip(gold, preds, strict=True):
        one = field_metrics(specs, [ex], [pred])["per_field"]
        predicted = [s.name for s in specs if pred.data["fields"][s.name]["value"] is not None]
        exact = all(f["f1"] == 1.0 for f in one.values() if f["support"])
        agree += exact and all(one[name]["support"] for name in predicted)
    report = field_metrics(specs, gold, preds)
    return agree, {
        "types": dict(data.field_types),
        "micro_f1": report["micro"]["f1"],
        "per_field_f1": {k: v["f1"] for k, v in report["per_field"].items()},
        "dropped_value_not_in_text": dict(sorted(data.dropped_fields.items())),
    }


__all__ = ["MIN_EXAMPLES", "MIN_PER_LABEL", "distill_task", "student_for"]
