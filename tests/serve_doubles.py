"""A tiny saved skill and serve configs for the server tests (no torch, milliseconds).

``Keywords`` is a real :class:`~slmstack.skills.base.Skill` (fit, predict, save, load),
so a config can name its folder as it would a trained classifier's. Import this module
before a server loads such a folder: it registers ``tests.Keywords.v1``.
"""

from __future__ import annotations

import textwrap
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from fixtures import TRAIN
from slmstack import registry
from slmstack.errors import DataError
from slmstack.skills.base import Skill, Tensors
from slmstack.types import Example, LabelScore, Prediction, Usage


@registry.skills.register("tests.Keywords.v1")
class Keywords(Skill):
    """Label = the label whose training words the text shares most; ``sleep_ms`` per call.

    Class attributes record what happened, for tests: ``batches`` (the size of each
    ``predict`` call) and ``gate`` (when ``gated``, each call waits until it is set).
    """

    skill_name = "tests.Keywords.v1"
    produces = frozenset({"label"})
    batches: ClassVar[list[int]] = []
    gate: ClassVar[threading.Event] = threading.Event()
    running: ClassVar[threading.Event] = threading.Event()

    def __init__(self, *, sleep_ms: float = 0.0, gated: bool = False, refuse: str = ""):
        self.sleep_ms = sleep_ms
        self.gated = gated
        self.refuse = refuse

    def fit(self, examples: Sequence[Example]) -> Self:
        counts: dict[str, Counter[str]] = {}
        for ex in examples:
            counts.setdefault(ex.label, Counter()).update(ex.text.lower().split())
        shared = set.intersection(*(set(c) for c in counts.values()))
        self.classes_ = sorted(counts)
        self.words_ = {label: sorted(set(c) - shared) for label, c in counts.items()}
        self.provenance_ = self._provenance(rows=len(examples))
        return self

    def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        type(self).batches.append(len(texts))
        type(self).running.set()
        if self.gated:
            type(self).gate.wait(timeout=30)
        if self.sleep_ms:
            time.sleep(self.sleep_ms / 1000)
        out = []
        for text in texts:
            if self.refuse and self.refuse in text:
                raise DataError(f"refused a text holding {self.refuse!r}")
            words = set(text.lower().split())
            hits = {label: len(words & set(w)) for label, w in self.words_.items()}
            label = max(self.classes_, key=lambda c: (hits[c], c == self.classes_[0]))
            total = sum(hits.values())
            confidence = hits[label] / total if total else 0.2
            out.append(
                Prediction(
                    label=label,
                    confidence=confidence,
                    scores=(LabelScore(label, confidence),),
                    usage=Usage(input_tokens=len(words)),
                )
            )
        return out

    def _state(self) -> tuple[dict[str, Any], Tensors]:
        return {"labels": self.classes_, "words": self.words_}, {}

    def _restore(self, config: Mapping[str, Any], tensors: Tensors, folder: Path) -> None:
        self.classes_ = list(config["labels"])
        self.words_ = {k: list(v) for k, v in config["words"].items()}


WORKFLOW = """\
name: desk
skills:
  intent: {skill}
steps:
  - cascade:
      threshold: 0.5
      tiers:
        - intent
        - escalate: {{reason: intent unclear, message: A colleague will answer shortly.}}
  - route:
      on: intent
      branches:
        card: {{template: "Your card is on its way."}}
      default: {{template: "We will handle your {{intent.label}} request."}}
"""


def write_server(folder: Path, extra: str = "", **skill_params: Any) -> Path:
    """A serve config in ``folder``: skill ``intent``, workflow ``desk``, ledger and inbox.

    ``skill_params`` go to a second skill, ``slow`` (a ``Keywords`` with them), served
    too when given. ``extra`` is appended to the YAML (limits, auth, ...).
    """
    skills = folder / "skills"
    Keywords().fit(TRAIN).save(skills / "intent")
    (folder / "desk.yaml").write_text(WORKFLOW.format(skill=skills / "intent"))
    slow = ""
    if skill_params:
        Keywords(**skill_params).fit(TRAIN).save(skills / "slow")
        slow = "  slow: skills/slow\n"
    config = folder / "serve.yaml"
    config.write_text(
        "skills:\n  intent: skills/intent\n"
        + slow
        + "workflows:\n  desk: desk.yaml\n"
        + "ledger: sqlite:///ledger.db\ninbox: sqlite:///inbox.db\n"
        + textwrap.dedent(extra)
    )
    return config
