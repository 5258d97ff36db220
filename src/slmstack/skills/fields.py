"""``FieldExtractor``: a validated record of declared fields from a document's text.

Method: candidate ranking with normalisers. For each declared field the normalisers
list every place that could hold its value (each line for ``text`` fields, each date
or amount found for the others; see :mod:`._field_features`). A logistic regression
per field, trained on the user's documents and true values, scores each candidate
from the frozen encoder's vectors of its line and neighbours, hashed keywords, its
position and value facts; an amount also by how it relates to the document's other sums
(the sum of two of them, the largest, what tendering leaves), which holds for vendors
never seen in training. The best candidate wins if its probability clears
a threshold; otherwise the field is reported as missing, never guessed.

A ``text`` value may span lines (an address, a name printed over two lines). With
``text_decode="lines"`` (the default) it is the best line plus the adjacent lines that
clear a second threshold, except a line that another text field scores higher (the
company's name above the address does not join the address). With ``"spans"`` every
run of up to ``max_span_lines`` consecutive lines is a candidate, scored as a whole by
a second regression over the line scores, the span's shape and the words at its edges
(see :mod:`._field_spans`);
it learns from out-of-fold line scores, as on unseen documents. On SROIE receipts of
unseen vendors it did not beat the line decoding on inner validation
(``bench/sroie_select.py``), so it is an option, not the default. The thresholds are
tuned per field on a held-out split (see :mod:`._field_decode`), or with ``val_folds``
> 1 on every document once, each scored by a fit that did not see it (cross-fitting:
about 2.5 times the training time; chosen for the SROIE vendor benchmark on inner
validation, where it gained a point, and not the default, which stays quick). Every
value keeps its evidence: line number and offsets.

``group_by`` names a field whose true value groups documents (the company: one
vendor's receipts), so that the held-out split and the out-of-fold scores keep each
group on one side: thresholds and span scorer are then tuned as for new vendors.

Training labels come from the true values: a date or amount candidate is positive when
its normalised value equals the true one; a line is positive for a text field when it
is (allowing OCR slips) part of the true value.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
from numpy.typing import NDArray

from slmstack.artifacts import data_hash
from slmstack.data.documents import read_field_examples
from slmstack.data.fields import FieldExample, FieldSpec, parse_schema, unreadable_values
from slmstack.data.validation import drop_duplicates
from slmstack.errors import ArtifactError, ConfigError, DataError
from slmstack.skills._field_decode import decode_field, tune_thresholds
from slmstack.skills._field_features import (
    FEATURE_LAYOUT,
    Line,
    split_lines,
)
from slmstack.skills._field_fit import (
    groups_of,
    tuning_folds,
)
from slmstack.skills._field_scoring import FieldScorer, Scored
from slmstack.skills._frozen import FrozenEncoder
from slmstack.skills.base import Skill, Tensors
from slmstack.skills.params import Check, Interval
from slmstack.types import Prediction, Span, Usage


def _schema_problem(value: Any) -> str | None:
    """What is wrong with a schema, in words (``None`` when :func:`parse_schema` takes it)."""
    try:
        parse_schema(value)
    except (ConfigError, TypeError) as exc:
        return f"a valid field schema ({exc})"
    return None


class FieldExtractor(FieldScorer, Skill):
    r"""Extract declared fields (text, ISO dates, amounts with currency) with evidence.

    ``predict`` gives one record per document: ``data["fields"][name]`` and
    ``data["missing"]``. A found field has ``value`` (text, ISO date, or decimal string
    plus ``currency``), ``confidence``, and evidence: ``line`` (0-based line number),
    ``start`` and ``end`` (character offsets in the text) and ``evidence`` (the source
    line text); a missing one has ``value: None`` and ``missing: True``. ``spans``
    repeats the found fields as character spans.

    Example:
        >>> fx = FieldExtractor(schema={"date": "date", "total": "amount"})
        >>> docs = [FieldExample("ACME\\nDate: 03/04/2024\\nTOTAL 12.50",
        ...                      {"date": "03/04/2024", "total": "12.50"})]
        >>> fx.fit(docs * 10).predict(["SHOP\\nDate: 05/06/2024\\nTOTAL 7.00"])  # doctest: +SKIP
    """

    skill_name = "slmstack.FieldExtractor.v1"
    produces = frozenset({"data", "spans"})
    reads_documents = True
    fitted_attribute = "weights_"
    state_version = FEATURE_LAYOUT
    constraints: ClassVar[Mapping[str, Check]] = {
        "schema": _schema_problem,
        "c": Interval(float, 0, None, closed="neither"),
        "threshold": Interval(float, 0, 1, closed="neither"),
        "val_fraction": Interval(float, 0, 1, closed="left"),
        "max_length": Interval(int, 8, None),
        **dict.fromkeys(("batch_size", "val_folds"), Interval(int, 1, None)),
        "max_span_lines": Interval(int, 1, 20),
    }

    def __init__(
        self,
        *,
        schema: Mapping[str, Any] | Sequence[FieldSpec],  # field name -> type or options
        base: str = "minilm",  # frozen encoder of each line and its neighbours
        c: float = 1.0,  # inverse L2 strength of each field's logistic regression
        threshold: float = 0.5,  # default of both thresholds, kept with < 10 held-out docs
        val_fraction: float = 0.2,  # held out to tune the thresholds (val_folds=1)
        val_folds: int = 1,  # >1: every document held out once, by one of this many fits
        max_length: int = 64,  # OCR lines are short; longer ones are cut (reported)
        batch_size: int = 64,
        text_decode: Literal["spans", "lines"] = "lines",  # how multi-line values are read
        max_span_lines: int = 5,  # longest run of lines a text value may span
        group_by: str | None = None,  # field whose true value groups documents (a vendor)
        seed: int = 0,
        allow_pickle: bool = False,
    ):
        self.schema = schema
        self.base = base
        self.c = c
        self.threshold = threshold
        self.val_fraction = val_fraction
        self.val_folds = val_folds
        self.max_length = max_length
        self.batch_size = batch_size
        self.text_decode = text_decode
        self.max_span_lines = max_span_lines
        self.group_by = group_by
        self.seed = seed
        self.allow_pickle = allow_pickle

    def _saved_params(self) -> dict[str, Any]:
        # A schema of FieldSpec objects is saved as plain dicts (JSON).
        params = self.get_params()
        schema = self.schema
        if isinstance(schema, list | tuple) and all(isinstance(s, FieldSpec) for s in schema):
            # drop_code means something for text fields only
            text_only = {"drop_code"}
            params["schema"] = {
                s.name: s.model_dump(exclude={"name"} | (set() if s.type == "text" else text_only))
                for s in schema
            }
        return params

    @classmethod
    def read_training_data(
        cls, path: Path, *, text_key: str = "text", values_key: str = "values"
    ) -> list[FieldExample]:
        """JSONL documents: ``{"text": ..., "values": {field: true value or null}}``."""
        return read_field_examples(path, text_key=text_key, values_key=values_key)

    def evaluate(self, data: Path, **options: Any) -> dict[str, Any]:
        """Field precision, recall and F1 (exact after normalisation), micro and per field."""
        from slmstack.evaluation.extraction import evaluate_fields

        return evaluate_fields(self, data, **options)

    # ------------------------------------------------------------------ fitting
    def fit(self, examples: Sequence[FieldExample]) -> Self:
        """Learn each field's scorer from documents and their true values."""
        self._check_params()
        self.specs_: list[FieldSpec] = parse_schema(self.schema)
        if not examples:
            raise DataError("no training documents; pass FieldExample(text, values) items")
        names = {s.name for s in self.specs_}
        for i, ex in enumerate(examples):
            unknown = sorted(set(ex.values) - names)
            if unknown:
                raise DataError(
                    f"{ex.source or f'document #{i + 1}'}: values for {unknown}, which the "
                    f"schema does not declare (it has {sorted(names)}); add them to the schema"
                )
        bad = unreadable_values(self.specs_, examples)
        if bad:
            shown = "; ".join(str(u) for u in bad[:5])
            more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise DataError(
                f"{len(bad)} true value(s) cannot be read as their field's type, so nothing "
                f"can be learned from them: {shown}{more}. Correct them, or drop those "
                "documents: `slmstack train fields --skip-invalid`, or in Python "
                "`slmstack.data.fields.drop_unreadable(specs, examples)`"
            )
        if self.group_by is not None and self.group_by not in names:
            raise ConfigError(
                f"group_by={self.group_by!r} is not a field of the schema "
                f"({sorted(names)}); name one of them, or leave group_by unset"
            )
        examples, dropped = drop_duplicates(examples)
        groups = groups_of(examples, self.group_by)
        start = time.perf_counter()
        self.encoder_ = FrozenEncoder(
            self.base, max_length=self.max_length, batch_size=self.batch_size,
            allow_pickle=self.allow_pickle,
        )  # fmt: skip
        docs = [split_lines(ex.text) for ex in examples]
        self.encoder_.cache([ln.text for lines in docs for ln in lines])
        self.metrics_: dict[str, float] = {}
        self.thresholds_: dict[str, tuple[float, float]] = {
            s.name: (self.threshold, self.threshold) for s in self.specs_
        }
        folds = tuning_folds(groups, self.val_folds, self.val_fraction, self.seed)
        if folds:
            self._cross_tune(examples, docs, groups, folds)
        self.weights_, self.span_weights_ = self._fit_fields(docs, examples, groups)
        rows = [(ex.text, *(f"{k}={v}" for k, v in sorted(ex.values.items()))) for ex in examples]
        self.provenance_ = self._provenance(
            base=self.encoder_.source.describe(), data_sha256=data_hash(rows), rows=len(rows),
            duplicates_dropped=dropped, seconds=time.perf_counter() - start,
            metrics=self.metrics_,
        )  # fmt: skip
        return self

    # ------------------------------------------------------------------ predicting
    def _cross_tune(
        self,
        examples: Sequence[FieldExample],
        docs: Sequence[list[Line]],
        groups: Sequence[str],
        folds: list[list[int]],
    ) -> None:
        """Tune the thresholds on held-out documents; report the held-out F1.

        Each held-out document is scored by a fit that did not see it: one fold, or, with
        ``val_folds`` > 1, every document once.
        """
        from slmstack.evaluation.extraction import field_metrics

        held = [i for va in folds for i in va]
        scores: dict[str, list[Scored]] = {}
        for va in folds:
            tr = sorted(set(range(len(examples))) - set(va))
            self.weights_, self.span_weights_ = self._fit_fields(
                [docs[i] for i in tr], [examples[i] for i in tr], [groups[i] for i in tr]
            )
            for name, per_doc in self._scores([docs[i] for i in va]).items():
                scores.setdefault(name, []).extend(per_doc)
        examples, docs = [examples[i] for i in held], [docs[i] for i in held]
        for spec in self.specs_:
            held_out = [
                (ex.text, lines, cands, p, q)
                for ex, lines, (cands, p, q) in zip(examples, docs, scores[spec.name], strict=True)
            ]
            gold = [ex.values.get(spec.name) for ex in examples]
            self.thresholds_[spec.name] = tune_thresholds(
                spec, held_out, gold, self.threshold, grow=not self._spans_on(spec)
            )
        preds = self._predict_docs([ex.text for ex in examples], docs, scores)
        report = field_metrics(self.specs_, examples, preds)
        self.metrics_ = {"val_micro_f1": report["micro"]["f1"], "n_val": float(len(held)),
                         "val_folds": float(len(folds))}  # fmt: skip
        self.metrics_.update({f"val_f1_{k}": v["f1"] for k, v in report["per_field"].items()})

    def _predict_docs(
        self,
        texts: Sequence[str],
        docs: Sequence[list[Line]],
        scores: Mapping[str, list[Scored]] | None = None,
    ) -> list[Prediction]:
        start_t = time.perf_counter()
        records: list[dict[str, Any]] = [{} for _ in texts]
        spans: list[list[Span]] = [[] for _ in texts]
        for name, per_doc in (self._scores(docs) if scores is None else scores).items():
            spec = next(s for s in self.specs_ if s.name == name)
            answer, extend = self.thresholds_[name]
            grow = extend if spec.type == "text" and not self._spans_on(spec) else None
            for i, (cands, p, q) in enumerate(per_doc):
                rec, span = decode_field(spec, texts[i], docs[i], cands, p, answer, grow, q)
                records[i][name] = rec
                if span is not None:
                    spans[i].append(span)
        per_item_ms = (time.perf_counter() - start_t) * 1000 / max(1, len(texts))
        out = []
        for i, rec in enumerate(records):
            missing = [name for name, r in rec.items() if r.get("missing")]
            required = [s.name for s in self.specs_ if s.required and s.name in missing]
            out.append(
                Prediction(
                    # a record without a required field is not a record: a cascade escalates
                    abstained="missing_required" if required else None,
                    confidence=min(r["confidence"] for r in rec.values()),
                    spans=tuple(sorted(spans[i], key=lambda s: s.start)),
                    data={"fields": rec, "missing": missing},
                    usage=Usage(
                        input_tokens=sum(self.encoder_.n_tokens(ln.text) for ln in docs[i]),
                        latency_ms=per_item_ms,
                    ),
                    warnings=tuple(f"required field {n!r} not found" for n in required),
                )
            )
        return out

    def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One record per document (see the class docstring), with evidence and spans."""
        return self._predict_docs(list(texts), [split_lines(t) for t in texts])

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, Any], Tensors]:
        weights: dict[str, NDArray[np.float32]] = {}
        for k, spec in enumerate(self.specs_):
            coef, bias = self.weights_[spec.name]
            weights[f"{k}.coef"] = coef
            weights[f"{k}.bias"] = np.array([bias], dtype=np.float32)
            if spec.name in self.span_weights_:
                coef, bias = self.span_weights_[spec.name]
                weights[f"{k}.span_coef"] = coef
                weights[f"{k}.span_bias"] = np.array([bias], dtype=np.float32)
        config = {
            "thresholds": {k: list(v) for k, v in self.thresholds_.items()},
            "feature_layout": FEATURE_LAYOUT,
        }
        return config, {"fields": weights}

    def _restore(self, config: Mapping[str, Any], tensors: Tensors, folder: Path) -> None:
        self.specs_ = parse_schema(self.schema)
        layout = config.get("feature_layout", 1)
        if layout != FEATURE_LAYOUT:
            raise ArtifactError(
                f"{folder}: this field extractor was saved with feature layout {layout}, and "
                f"this slmstack computes layout {FEATURE_LAYOUT} (money facts were added to "
                "amount candidates), so its weights no longer fit; train it again "
                "(`slmstack train fields ...`) from the same data"
            )
        self.thresholds_ = {k: (float(v[0]), float(v[1])) for k, v in config["thresholds"].items()}
        weights = tensors["fields"]
        self.weights_ = {
            s.name: (weights[f"{k}.coef"], float(weights[f"{k}.bias"][0]))
            for k, s in enumerate(self.specs_)
        }
        self.span_weights_ = {
            s.name: (weights[f"{k}.span_coef"], float(weights[f"{k}.span_bias"][0]))
            for k, s in enumerate(self.specs_)
            if self._spans_on(s)
        }
        self.metrics_ = dict(self.provenance_.metrics)
        self.encoder_ = FrozenEncoder(
            self.base, max_length=self.max_length, batch_size=self.batch_size,
            allow_pickle=self.allow_pickle, expect_sha256=self.provenance_.base.get("sha256"),
        )  # fmt: skip

    def _card(self) -> dict[str, Any]:
        return {
            "Method": "candidate ranking: one logistic regression per field over "
            "normaliser candidates (frozen encoder vectors, hashed words, position)"
            + (
                "; text values: runs of lines scored by a second regression"
                if self.text_decode == "spans"
                else ""
            ),
            "Fields": {s.name: s.type for s in self.specs_},
            "Thresholds (answer, extend)": {k: list(v) for k, v in self.thresholds_.items()},
        }
