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

import json
import threading
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Self

from slmstack import registry
from slmstack.data.validation import validate_examples
from slmstack.errors import (
    ConfigError,
    DataError,
    MissingDependencyError,
    NotFittedError,
)
from slmstack.artifacts import (
    data_hash,
    read_verified_config,
    write_config,
    write_model_card,
)
from slmstack.skills.base import Skill, check_texts
from slmstack.types import Example, LabelScore, Prediction, Usage

_NAME = "slmstack.LanguageDetector.v1"
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


@registry.skills.register(_NAME)
class LanguageDetector(Skill):
    """Language identification restricted to the languages of the training labels."""

    skill_name = _NAME
    produces: ClassVar[frozenset[str]] = frozenset({"label", "scores"})

    def __init__(self, *, top_k: int = 3):
        self.top_k = top_k

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as passed to ``__init__``."""
        return {"top_k": self.top_k}

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
        if not isinstance(self.top_k, int) or self.top_k < 1:
            raise ConfigError(
                f"The 'top_k' parameter of LanguageDetector must be an int >= 1. "
                f"Got {self.top_k!r} instead."
            )
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
        self.data_sha256_ = data_hash([(ex.text, ex.label) for ex in examples])
        return self

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Language code and posterior for each text."""
        if not hasattr(self, "classes_"):
            raise NotFittedError(
                "This LanguageDetector is not fitted yet. Call fit(examples) or "
                "LanguageDetector.load(folder) first."
            )
        check_texts(texts)
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

    def save(self, path: str | Path) -> Path:
        """Write the language set and metrics (langid's model comes from the package)."""
        if not hasattr(self, "classes_"):
            raise NotFittedError("fit the LanguageDetector before saving it")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "labels.json").write_text(json.dumps(self.classes_) + "\n")
        config = {
            "skill": _NAME,
            "params": self.get_params(),
            "labels": self.classes_,
            "metrics": self.metrics_,
            "data": {"sha256": self.data_sha256_},
            "langid_version": metadata.version("langid"),
        }
        write_config(folder, config, ["labels.json"])
        write_model_card(
            folder,
            "LanguageDetector (langid.py)",
            {
                "Method": "langid.py naive Bayes over byte n-grams, restricted to the labels",
                "Languages": ", ".join(self.classes_),
                "Metrics": self.metrics_,
                "langid version": config["langid_version"],
            },
        )
        return folder

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Rebuild a detector saved with :meth:`save`."""
        folder = Path(path)
        config = read_verified_config(folder, _NAME, "LanguageDetector")
        self = cls(**config["params"])
        self.classes_ = list(config["labels"])
        self.identifier_ = self._identifier(self.classes_)
        self.metrics_ = dict(config["metrics"])
        self.data_sha256_ = config["data"]["sha256"]
        return self
