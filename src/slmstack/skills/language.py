"""``LanguageDetector``: which language a text is in, for routing to regional variants.

It wraps ``langid.py`` (Lui & Baldwin 2012), a naive-Bayes identifier over byte n-grams
for 97 languages that ships its model inside the package and runs offline. ``fit`` takes
examples labelled with language codes: the codes seen become the only languages the
detector chooses between (a support desk that serves English, German and French should
never answer "Luxembourgish"), and the examples measure how well it does on them.
Confidences are langid's normalised posteriors over those languages.

Example:
    >>> from slmstack import Example
    >>> det = LanguageDetector().fit([Example("where is my card", "en"),
    ...                              Example("wo ist meine Karte", "de")])  # doctest: +SKIP
    >>> det.predict(["Ich habe mein Passwort vergessen"])[0].label  # doctest: +SKIP
    'de'
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Self

from slmstack.artifacts import data_hash
from slmstack.data.validation import drop_duplicates, validate_examples
from slmstack.errors import ArtifactError, DataError, MissingDependencyError
from slmstack.skills._labels import saved_labels, write_labels
from slmstack.skills.base import Skill, Tensors
from slmstack.skills.kinds import LabelledTexts
from slmstack.skills.params import Check, Interval
from slmstack.types import Example, LabelScore, Prediction, Usage

_lock = threading.Lock()
_base: Any = None


def _full_model() -> Any:
    """The full langid model, decoded once per process (it takes seconds) and shared."""
    global _base
    with _lock:
        if _base is None:
            try:
                from langid.langid import LanguageIdentifier, model
            except ImportError as exc:
                raise MissingDependencyError("langid", "workflows", "LanguageDetector") from exc
            _base = LanguageIdentifier.from_modelstring(model, norm_probs=True)
        return _base


class LanguageDetector(LabelledTexts, Skill):
    """Language identification restricted to the languages of the training labels."""

    skill_name = "slmstack.LanguageDetector.v1"
    produces: ClassVar[frozenset[str]] = frozenset({"label", "scores"})
    fitted_attribute = "classes_"
    constraints: ClassVar[Mapping[str, Check]] = {"top_k": Interval(int, 1, None)}

    def __init__(self, *, top_k: int = 3):  # languages listed in each prediction's scores
        self.top_k = top_k

    def _identifier(self, languages: Sequence[str]) -> Any:
        from langid.langid import LanguageIdentifier

        base = _full_model()
        # A new identifier over the shared arrays; set_languages re-slices, never mutates.
        ident = LanguageIdentifier(
            base.nb_ptc,
            base.nb_pc,
            base.nb_numfeats,
            base.nb_classes,
            base.tk_nextmove,
            base.tk_output,
            norm_probs=True,
        )
        ident.set_languages(list(languages))
        return ident

    def fit(self, examples: Sequence[Example]) -> Self:
        """Learn the language set from the labels; measure accuracy on the examples."""
        self._check_params()
        start = time.perf_counter()
        examples, dropped = drop_duplicates(examples)
        validate_examples(examples)
        languages = sorted({ex.label for ex in examples})
        known = set(_full_model().nb_classes)
        unknown = [lang for lang in languages if lang not in known]
        if unknown:
            raise DataError(
                f"labels {unknown} are not language codes langid knows; use ISO 639-1 codes "
                f"such as {', '.join(sorted(known)[:12])}, ..."
            )
        self.identifier_ = self._identifier(languages)
        self.classes_ = languages
        correct = sum(self.identifier_.classify(ex.text)[0] == ex.label for ex in examples)
        self.metrics_ = {"train_accuracy": correct / len(examples), "n": float(len(examples))}
        self.provenance_ = self._provenance(
            base={"ref": "langid.py", "origin": "package",
                  "sha256": _model_sha256(), "licence": "BSD-2-Clause"},
            data_sha256=data_hash([(ex.text, ex.label) for ex in examples]),
            rows=len(examples), duplicates_dropped=dropped,
            seconds=time.perf_counter() - start, metrics=self.metrics_,
        )  # fmt: skip
        return self

    def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Language code and posterior for each text."""
        out = []
        for text in texts:
            start = time.perf_counter()
            ranked = self.identifier_.rank(text)[: self.top_k]
            out.append(
                Prediction(
                    label=ranked[0][0],
                    confidence=float(ranked[0][1]),
                    scores=tuple(LabelScore(lang, float(p)) for lang, p in ranked),
                    usage=Usage(latency_ms=(time.perf_counter() - start) * 1000),
                )
            )
        return out

    def _state(self) -> tuple[dict[str, Any], Tensors]:
        return {"labels": self.classes_, "langid_version": metadata.version("langid")}, {}

    def _write_extra(self, folder: Path) -> None:
        write_labels(folder, self.classes_)

    def _restore(self, config: Mapping[str, Any], tensors: Tensors, folder: Path) -> None:
        recorded = self.provenance_.base.get("sha256")
        if recorded != _model_sha256():
            raise ArtifactError(
                f"{folder} was trained with another langid model (sha256 {recorded}); "
                "install the langid version in its config, or retrain the skill."
            )
        self.classes_ = saved_labels(folder, config)
        self.identifier_ = self._identifier(self.classes_)
        self.metrics_ = dict(self.provenance_.metrics)

    def _card(self) -> dict[str, Any]:
        return {"Method": "langid.py naive Bayes over byte n-grams, restricted to the labels",
                "Languages": ", ".join(self.classes_)}  # fmt: skip


def _model_sha256() -> str:
    """sha256 of langid's packed model string: the base this skill depends on."""
    from langid.langid import model

    return hashlib.sha256(model.encode() if isinstance(model, str) else model).hexdigest()
