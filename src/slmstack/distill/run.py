"""Distillation: an LLM teacher labels unlabelled texts, a small student learns them.

Method. The texts are split once, with a fixed seed, into a training part and a held-out
part (every copy of a repeated text on the same side). The teacher (any skill that
predicts labels: an :class:`LLMClassifier` on a local or hosted LLM, or a bigger SLM)
labels both parts in batches, through the :class:`~slmstack.distill.cache.TeacherCache`,
and each call is costed from the price table. The student (any classifier kind) is
trained on the teacher's labels of the training part; texts the teacher abstained on, or
labelled below ``min_confidence``, are left out (a soft form of confidence weighting that
works with every student). The report says how often the student agrees with the teacher
on the held-out texts the teacher labelled, how accurate both are against gold labels
where the data has them, and what the teacher cost (all of it, and what this run paid,
which is zero for a resumed run).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from slmstack.distill.cache import TeacherCache, TeacherLabel, text_key
from slmstack.errors import DataError
from slmstack.progress import progress
from slmstack.skills.base import Skill
from slmstack.types import Example, Prediction

CostOf = Callable[[Prediction, float], int]
"""Nano-dollars of one teacher prediction, given the batch seconds spent on it."""


@dataclass
class DistillReport:
    """What a distillation run did and measured."""

    texts: int
    train_texts: int
    held_out_texts: int
    teacher_labels_bought: int  # labelled by this run (the rest came from the cache)
    teacher_abstained: int
    dropped_low_confidence: int
    agreement_with_teacher: float  # student = teacher, held-out texts the teacher labelled
    student_gold_accuracy: float | None  # where the data has gold labels
    teacher_gold_accuracy: float | None
    teacher_cost_usd: Decimal  # all teacher labels used, cached or not
    teacher_cost_this_run_usd: Decimal
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe view (money as strings, exact)."""
        out = dict(self.__dict__)
        out["teacher_cost_usd"] = str(self.teacher_cost_usd)
        out["teacher_cost_this_run_usd"] = str(self.teacher_cost_this_run_usd)
        return out


def _paid(cache: TeacherCache, key: str) -> int:
    cached = cache.get(key)
    return 0 if cached is None else cached.cost_nano_usd


def label_with_teacher(
    teacher: Skill,
    texts: Sequence[str],
    cache: TeacherCache,
    *,
    identity: str,
    cost_of: CostOf,
    batch_size: int = 16,
    retry_abstained: bool = False,
) -> tuple[list[TeacherLabel], int]:
    """Labels of every text (cached ones reused) and how many this call bought.

    ``retry_abstained`` buys again the labels the teacher abstained on (a server that
    answered garbage, since fixed); the new answer replaces the cached one.
    """
    keys = [text_key(identity, t) for t in texts]
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)

    def wanted(key: str) -> bool:
        cached = cache.get(key)
        return cached is None or (retry_abstained and cached.label is None)

    with cache.locked():  # re-reads the file: labels another run bought are not bought again
        todo = [i for k, i in first.items() if wanted(k)]  # each text bought once
        _buy(teacher, texts, keys, todo, len(first), cache, cost_of, batch_size,
             retry_abstained)  # fmt: skip
    labels = []
    for k in keys:
        label = cache.get(k)
        if label is None:  # the teacher returned fewer predictions than texts
            raise DataError("the teacher did not label every text; see its warnings")
        labels.append(label)
    return labels, len(todo)


def _buy(
    teacher: Skill,
    texts: Sequence[str],
    keys: Sequence[str],
    todo: Sequence[int],
    total: int,
    cache: TeacherCache,
    cost_of: CostOf,
    batch_size: int,
    retry_abstained: bool,
) -> None:
    """The teacher's labels of ``texts[i]`` for each ``i`` in ``todo``, into ``cache``."""
    import time

    with progress() as bar:
        task = bar.add_task("teacher labels", total=total, completed=total - len(todo))
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            began = time.perf_counter()
            preds = teacher.predict([texts[i] for i in chunk])
            per_item = (time.perf_counter() - began) / max(1, len(chunk))
            cache.add(
                (
                    TeacherLabel(
                        key=keys[i],
                        label=p.label if p.abstained is None else None,
                        confidence=float(p.confidence),
                        tokens_in=p.usage.input_tokens,
                        tokens_out=p.usage.output_tokens,
                        # a label bought again keeps the cost of the attempt it replaces
                        cost_nano_usd=cost_of(p, per_item) + _paid(cache, keys[i]),
                        abstained=p.abstained,
                    )
                    for i, p in zip(chunk, preds, strict=True)
                ),
                replace=retry_abstained,
            )
            bar.advance(task, len(chunk))


def distill(
    teacher: Skill,
    student: Skill,
    texts: Sequence[str],
    *,
    cache: TeacherCache,
    identity: str,
    cost_of: CostOf,
    gold: Sequence[str | None] | None = None,
    held_out: float = 0.2,
    min_confidence: float = 0.0,
    seed: int = 0,
    batch_size: int = 16,
    labelled: Sequence[Example] = (),
    retry_abstained: bool = False,
) -> DistillReport:
    """Label ``texts`` with ``teacher``, train ``student`` on the labels, and measure it.

    ``labelled`` are gold examples the student also trains on (the seed set the teacher
    was shown): with many labels, a few hundred teacher labels leave some labels with one
    example or none, which a classifier cannot learn. Their texts are never held out.
    """
    if len(texts) < 10:
        raise DataError(f"distillation needs at least 10 texts; got {len(texts)}")
    if gold is not None and len(gold) != len(texts):
        raise DataError(f"{len(gold)} gold labels for {len(texts)} texts")
    if not 0.0 < held_out < 1.0:
        raise DataError(f"held_out must be in (0, 1); got {held_out}")
    if not 0.0 <= min_confidence <= 1.0:  # before any label is bought
        raise DataError(f"min_confidence must be in [0, 1]; got {min_confidence}")
    unique = {text_key(identity, t) for t in texts}
    with cache.locked():  # what was spent before counts labels other runs bought meanwhile
        spent_before = sum((cache.get(k) or _ZERO).cost_nano_usd for k in unique)
        labels, bought = label_with_teacher(
            teacher, texts, cache, identity=identity, cost_of=cost_of, batch_size=batch_size,
            retry_abstained=retry_abstained,
        )  # fmt: skip
    # Split distinct texts, not rows: a copy of a held-out text left in training would
    # make the agreement score what the student memorised. Gold seed texts (often drawn
    # from the same pool) are trained on, so they are never held out either.
    seeds = {ex.text for ex in labelled}
    distinct = [t for t in dict.fromkeys(texts) if t not in seeds]
    if not distinct:
        raise DataError(
            "every text to label is also in the gold examples (labelled), so none is left "
            "to hold out and score the student on; pass texts beyond the gold ones"
        )
    random.Random(seed).shuffle(distinct)
    held_texts = set(distinct[: max(1, round(held_out * len(distinct)))])
    held = [i for i, t in enumerate(texts) if t in held_texts]
    train = [i for i, t in enumerate(texts) if t not in held_texts]
    usable = [i for i in train if labels[i].label is not None]
    kept = [i for i in usable if labels[i].confidence >= min_confidence]
    if len({labels[i].label for i in kept}) < 2:
        why = Counter(str(labels[i].abstained) for i in train if labels[i].label is None)
        said = ", ".join(f"{n} {reason}" for reason, n in why.most_common())
        raise DataError(
            f"the teacher gave fewer than two distinct labels to the {len(kept)} usable "
            f"training texts (of {len(train)}; abstained: {said or 'none'}"
            + (f"; {len(usable) - len(kept)} below min_confidence" if min_confidence else "")
            + f"). Check the teacher; its answers are cached in {cache.path}, and "
            "--retry-abstained buys the abstained ones again once it is fixed"
        )
    # A held-out text the teacher abstained on has no label to agree with: scoring it
    # as a disagreement would measure the teacher's failures, not the student.
    scorable = [i for i in held if labels[i].label is not None]
    if not scorable:
        raise DataError(
            f"the teacher abstained on all {len(held)} held-out texts, so the student's "
            f"agreement with it cannot be measured. Check the teacher; its answers are "
            f"cached in {cache.path}, and --retry-abstained buys them again once it is fixed"
        )
    student.fit([*labelled, *(Example(texts[i], str(labels[i].label)) for i in kept)])
    preds = student.predict([texts[i] for i in held])
    answered = [(p, i) for p, i in zip(preds, held, strict=True) if labels[i].label is not None]
    agree = sum(p.label == labels[i].label for p, i in answered)
    student_gold = teacher_gold = None
    if gold is not None:
        scored = [(p, i) for p, i in zip(preds, held, strict=True) if gold[i]]
        if scored:
            student_gold = sum(p.label == gold[i] for p, i in scored) / len(scored)
            teacher_gold = sum(labels[i].label == gold[i] for _, i in scored) / len(scored)
    total = sum({label.key: label.cost_nano_usd for label in labels}.values())
    return DistillReport(
        texts=len(texts),
        train_texts=len(kept),
        held_out_texts=len(held),
        teacher_labels_bought=bought,
        teacher_abstained=sum(1 for label in labels if label.label is None),
        dropped_low_confidence=len(usable) - len(kept),
        agreement_with_teacher=agree / len(scorable),
        student_gold_accuracy=student_gold,
        teacher_gold_accuracy=teacher_gold,
        teacher_cost_usd=Decimal(total).scaleb(-9),
        teacher_cost_this_run_usd=Decimal(total - spent_before).scaleb(-9),
        extra={"held_out_teacher_abstained": len(held) - len(scorable)},
    )


_ZERO = TeacherLabel(key="", label=None, confidence=0.0, tokens_in=0, tokens_out=0,
                     cost_nano_usd=0)  # fmt: skip
