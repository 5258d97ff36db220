"""``LLMExtractor``: declared fields read from a document by an LLM, as FieldExtractor reports them.

The same schema as :class:`~slmstack.skills.fields.FieldExtractor` (``text``, ``date``,
``amount`` fields) and the same prediction shape (``data["fields"]``, ``data["missing"]``,
spans), so ``slmstack eval`` scores the LLM and the small extractor on the same file with
the same metric. Method (see :mod:`._llm_prompts`): the fields and their types in the
system prompt; optional demonstrations (the ``k`` training documents most similar to the
text, with their true values as JSON); the answer constrained by a JSON schema with one
``string | null`` key per field. The model copies values as written; this skill then
normalises them with :mod:`slmstack.data.normalizers` (ISO dates in the field's day
order, exact decimal amounts with currency), which is more reliable than asking a small
model to reformat them.

Every value is then looked for in the document: its first occurrence gives the evidence
(line, character offsets, the line's text) and the span. A value the document does not
contain is reported missing with a warning (``require_evidence=True``, the default), as
FieldExtractor never guesses; a value that does not parse as its type is missing too.
Confidence per field is the value's probability from the backend's log-probabilities, or
its share of the votes over ``n_samples`` sampled answers (``data["confidence_method"]``
says which); the record's confidence is its least confident field.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from slmstack.artifacts import data_hash, library_versions
from slmstack.backends.base import Backend, ChatMessage, Completion, failover_warnings
from slmstack.data.documents import read_field_examples
from slmstack.data.fields import FieldExample, FieldSpec, parse_schema
from slmstack.data.normalizers import find_amounts, find_dates, parse_amount, parse_date
from slmstack.data.validation import drop_duplicates
from slmstack.errors import ConfigError, DataError
from slmstack.skills._llm_prompts import (
    Answers,
    ConfidenceMethod,
    LLMCaller,
    PredictOnce,
    backend_record,
    chat,
    check_same_backend,
    json_object_check,
    make_backend,
    max_tokens_check,
    model_check,
    per_item_ms,
    refuse_object_save,
    value_probability,
    vote,
)
from slmstack.skills._llm_shots import Retriever, ShotPool
from slmstack.skills.base import Skill, Tensors
from slmstack.skills.params import Check, Interval, runtime_check
from slmstack.types import Prediction, Span, Usage

_ASK = "Document:\n"
_NULL_WORDS = {"", "null", "none", "n/a", "na", "unknown", "-"}
_HOW = {
    "text": "copied exactly as written",
    "date": "the date as written in the document",
    "amount": "the amount as written, with its currency if shown",
}

Field = tuple[dict[str, Any], str | None]
"""A field's record without confidence, and a warning (or ``None``)."""


def _schema_check(value: Any) -> str | None:
    try:
        parse_schema(value)
    except (ConfigError, TypeError) as exc:
        return f"a valid field schema ({exc})"
    return None


def _lines(doc: str) -> list[tuple[int, int, str]]:
    """``(start, end, text)`` of each line, numbered as ``str.splitlines`` numbers them."""
    out, pos = [], 0
    for raw in doc.splitlines(keepends=True):
        body = raw.rstrip("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
        out.append((pos, pos + len(body), body))
        pos += len(raw)
    return out


def locate(spec: FieldSpec, doc: str, value: str) -> tuple[int, int] | None:
    """Offsets of the first place ``doc`` holds the normalised ``value`` of ``spec``.

    Text values match word for word, ignoring case, punctuation and line breaks (an
    address the model joined with a comma still matches the two lines it came from).
    """
    if spec.type == "text":
        words = re.findall(r"\w+", value)
        if not words:
            return None
        found = re.search(r"[\W_]*".join(map(re.escape, words)), doc, re.IGNORECASE)
        return None if found is None else found.span()
    for start, _, line in _lines(doc):
        if spec.type == "date":
            hits = [(s, e) for s, e, d in find_dates(line, order=spec.order)
                    if d.isoformat() == value]  # fmt: skip
        else:
            hits = [(s, e) for s, e, m in find_amounts(line) if str(m.amount) == value]
        if hits:
            return start + hits[0][0], start + hits[0][1]
    return None


class LLMExtractor(Skill):
    r"""Extract declared fields (text, ISO dates, amounts) with an LLM, with evidence.

    Example:
        >>> from slmstack import LLMExtractor
        >>> fx = LLMExtractor(schema={"date": "date", "total": "amount"}, k=0)  # doctest: +SKIP
        >>> p = fx.fit([]).predict(["SHOP\nDate: 05/06/2024\nTOTAL 7.00"])[0]  # doctest: +SKIP
        >>> p.data["fields"]["date"]["value"], p.data["confidence_method"]  # doctest: +SKIP
        ('2024-06-05', 'self_consistency')
    """

    skill_name = "slmstack.LLMExtractor.v1"
    produces = frozenset({"data", "spans"})
    reads_documents = True
    fitted_attribute = "specs_"
    constraints: ClassVar[Mapping[str, Check]] = {
        "schema": _schema_check,
        "model": model_check,
        "runtime": runtime_check,
        "backend_options": json_object_check,
        "k": Interval(int, 0, None, note="(0 is zero-shot)"),
        "n_samples": Interval(int, 2, None),
        "sample_temperature": Interval(float, 0, None, closed="neither"),
        "max_tokens": max_tokens_check,
    }

    def __init__(
        self,
        *,
        schema: Mapping[str, Any] | Sequence[FieldSpec],  # field name -> type or options
        model: str | Backend = "smollm2",  # generator alias, GGUF file, remote name, Backend
        runtime: str = "llama_cpp",  # llama_cpp, transformers or openai (needs a base_url)
        backend_options: dict[str, Any] | None = None,  # e.g. base_url, api_key_env, n_ctx
        instructions: str = "",  # appended to the system prompt
        k: int = 1,  # demonstrations; documents are long, one fits a 2,048-token window
        retriever: Retriever = "tfidf",  # shop names and layout words find similar documents
        encoder: str = "minilm",  # sentence encoder of the embedding retriever
        confidence_method: ConfidenceMethod = "auto",  # logprobs when given, else sampling
        n_samples: int = 5,  # self-consistency calls per text: 5 votes, steps of 0.2
        sample_temperature: float = 0.7,  # diverse enough to disagree when unsure
        require_evidence: bool = True,  # a value the text does not contain is missing
        max_tokens: int | None = None,  # default: 48 tokens per field
        seed: int = 0,
        allow_pickle: bool = False,
    ):
        self.schema = schema
        self.model = model
        self.runtime = runtime
        self.backend_options = backend_options
        self.instructions = instructions
        self.k = k
        self.retriever = retriever
        self.encoder = encoder
        self.confidence_method = confidence_method
        self.n_samples = n_samples
        self.sample_temperature = sample_temperature
        self.require_evidence = require_evidence
        self.max_tokens = max_tokens
        self.seed = seed
        self.allow_pickle = allow_pickle

    def _saved_params(self) -> dict[str, Any]:
        # A schema of FieldSpec objects is saved as plain dicts (JSON).
        params = self.get_params()
        if not isinstance(self.schema, Mapping):
            params["schema"] = {s.name: s.model_dump(exclude={"name"}) for s in self.schema}
        return params

    @classmethod
    def read_training_data(
        cls, path: Path, *, text_key: str = "text", values_key: str = "values"
    ) -> list[FieldExample]:
        """Demonstrations, as FieldExtractor reads them: ``{"text": ..., "values": {...}}``."""
        return read_field_examples(path, text_key=text_key, values_key=values_key)

    def evaluate(self, data: Path, **options: Any) -> dict[str, Any]:
        """Field precision, recall and F1 (as FieldExtractor), speed and tokens; one call each."""
        from slmstack.evaluation.extraction import evaluate_fields

        once = PredictOnce(self)
        return once.finish(evaluate_fields(once, data, **options))

    # ------------------------------------------------------------------ fitting
    def fit(self, examples: Sequence[FieldExample] = ()) -> Self:
        """Keep the demonstration pool (may be empty: zero-shot); nothing is trained."""
        self._check_params()
        if isinstance(examples, str | Path):
            raise ConfigError("fit() takes FieldExample objects; read files with "
                              "read_field_examples()")  # fmt: skip
        self.specs_: list[FieldSpec] = parse_schema(self.schema)
        names = {s.name for s in self.specs_}
        for i, ex in enumerate(examples):
            if not isinstance(ex, FieldExample):
                raise DataError(f"document #{i + 1} is {type(ex).__name__}, expected FieldExample")
            unknown = sorted(set(ex.values) - names)
            if unknown:
                raise DataError(
                    f"{ex.source or f'document #{i + 1}'}: values for {unknown}, which the "
                    f"schema does not declare (it has {sorted(names)}); add them to the schema"
                )
        start = time.perf_counter()
        examples, dropped = drop_duplicates(list(examples))
        self._setup()
        self.pool_.build([(ex.text, self._answer(ex.values)) for ex in examples],
                         index=self.k > 0)  # fmt: skip
        rows = [(ex.text, *(f"{k}={v}" for k, v in sorted(ex.values.items()))) for ex in examples]
        self.provenance_ = self._provenance(
            base=backend_record(self.model, self.runtime, self.backend_),
            data_sha256=data_hash(rows), rows=len(rows), duplicates_dropped=dropped,
            seconds=time.perf_counter() - start,
        )  # fmt: skip
        self.provenance_.versions.update(library_versions(["llama-cpp-python"]))
        return self

    def _answer(self, values: Mapping[str, str | None]) -> str:
        """A demonstration's answer: every field, as written, ``null`` when absent."""
        return json.dumps({s.name: values.get(s.name) for s in self.specs_}, ensure_ascii=False)

    def _setup(self) -> None:
        """Backend, an empty demonstration pool, output schema and caller (fit and load)."""
        self.backend_ = make_backend(self.model, self.runtime, self.backend_options)
        self.pool_ = ShotPool(self.retriever, self.encoder, allow_pickle=self.allow_pickle)
        # Every key required: llama.cpp grammars may otherwise stop after the first.
        self.output_schema_ = {
            "type": "object",
            "properties": {s.name: {"type": ["string", "null"], "description": _HOW[s.type]}
                           for s in self.specs_},
            "required": [s.name for s in self.specs_],
        }  # fmt: skip
        self.caller_ = LLMCaller(
            self.backend_, method=self.confidence_method, n_samples=self.n_samples,
            temperature=self.sample_temperature, seed=self.seed,
            max_tokens=self.max_tokens or 48 * len(self.specs_) + 16,
        )  # fmt: skip

    # ------------------------------------------------------------------ prompting
    def messages(self, text: str, shots: Sequence[int] = ()) -> list[ChatMessage]:
        """The chat sent for ``text`` with pool demonstrations ``shots`` (most similar first)."""
        fields = "\n".join(f"- {s.name} ({s.type}): {_HOW[s.type]}" for s in self.specs_)
        system = (
            "You extract fields from documents. Answer with JSON only, one key per field:\n"
            f"{fields}\nUse null for a field the document does not contain. Never guess."
        )
        if self.instructions:
            system += " " + self.instructions
        demos = [(self.pool_.texts[i], self.pool_.answers[i]) for i in reversed(list(shots))]
        return chat(system, demos, text, _ASK)

    # ------------------------------------------------------------------ predicting
    def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One record per document (see the module docstring), with evidence and spans."""
        start = time.perf_counter()
        neighbours = self.pool_.nearest(texts, self.k)
        retrieval_ms = per_item_ms(start, len(texts))
        out = []
        for text, shots in zip(texts, neighbours, strict=True):
            t0 = time.perf_counter()
            answers = self.caller_.ask(self.messages(text, shots), self.output_schema_)
            usage = answers.usage(retrieval_ms + (time.perf_counter() - t0) * 1000)
            out.append(self._read(text, answers, usage))
        return out

    def _field(self, spec: FieldSpec, doc: str, raw: Any) -> Field:
        """Normalise the model's value of one field and find it in the document."""
        missing: dict[str, Any] = {"value": None, "missing": True}
        if raw is None or str(raw).strip().casefold() in _NULL_WORDS:
            return missing, None
        raw = str(raw)
        record: dict[str, Any] = {}
        try:
            if spec.type == "date":
                record["value"] = parse_date(raw, order=spec.order).isoformat()
            elif spec.type == "amount":
                money = parse_amount(raw, default_currency=spec.currency)
                record["value"], record["currency"] = str(money.amount), money.currency
            else:
                record["value"] = " ".join(raw.split())
        except DataError:
            return missing, f"field {spec.name!r}: {raw!r} is not a {spec.type}; reported missing"
        where = locate(spec, doc, record["value"])
        if where is None:
            if self.require_evidence:
                return missing, (f"field {spec.name!r}: the model's value {raw!r} does not occur "
                                 "in the text; reported missing")  # fmt: skip
            return {**record, "line": None, "start": None, "end": None, "evidence": None}, None
        lines = _lines(doc)
        first = max(i for i, (s, _, _) in enumerate(lines) if s <= where[0])
        last = max(i for i, (s, _, _) in enumerate(lines) if s < where[1])
        evidence = " / ".join(ln.strip() for _, _, ln in lines[first : last + 1] if ln.strip())
        return {**record, "line": first, "start": where[0], "end": where[1],
                "evidence": evidence}, None  # fmt: skip

    def _sample(self, doc: str, completion: Completion) -> dict[str, Field] | None:
        """Each field of one answer, or ``None`` when the answer is not a JSON object."""
        try:
            obj = json.loads(completion.text)
        except json.JSONDecodeError:
            return None
        if not isinstance(obj, dict):
            return None
        return {s.name: self._field(s, doc, obj.get(s.name)) for s in self.specs_}

    def _read(self, doc: str, answers: Answers, usage: Usage) -> Prediction:
        data: dict[str, Any] = {"confidence_method": answers.method, "model": answers.model}
        samples = [self._sample(doc, c) for c in answers.completions]
        valid = [s for s in samples if s is not None]
        warnings = failover_warnings(answers.completions)
        if len(valid) < len(samples):
            warnings.append(f"{len(samples) - len(valid)} of {len(samples)} answers were not a "
                            "JSON object; the backend did not honour the JSON schema")  # fmt: skip
        if not valid:
            return Prediction(abstained="invalid_output", data=data, usage=usage,
                              warnings=tuple(warnings))  # fmt: skip
        fields: dict[str, dict[str, Any]] = {}
        for spec in self.specs_:
            if answers.method == "logprobs":
                record, warning = valid[0][spec.name]
                confidence = value_probability(answers.completions[0], spec.name)
            else:
                keys = [_key(s[spec.name][0]) for s in valid]
                winner, counts = vote(keys)
                record, warning = valid[keys.index(winner)][spec.name]
                confidence = counts[winner] / len(samples)  # invalid answers vote for nothing
            fields[spec.name] = {**record, "confidence": confidence}
            if warning:
                warnings.append(warning)
        missing = [name for name, r in fields.items() if r.get("missing")]
        warnings += [f"required field {s.name!r} not found" for s in self.specs_
                     if s.required and s.name in missing]  # fmt: skip
        spans = sorted(
            (Span(name, r["start"], r["end"], doc[r["start"] : r["end"]], r["confidence"])
             for name, r in fields.items() if r.get("start") is not None),
            key=lambda s: s.start,
        )  # fmt: skip
        return Prediction(
            confidence=min(r["confidence"] for r in fields.values()), spans=tuple(spans),
            data={"fields": fields, "missing": missing, **data}, usage=usage,
            warnings=tuple(warnings),
        )  # fmt: skip

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, Any], Tensors]:
        refuse_object_save(self.model, type(self).__name__)
        return self.pool_.state()

    def _write_extra(self, folder: Path) -> None:
        self.pool_.write(folder)

    def _restore(self, config: Mapping[str, Any], tensors: Tensors, folder: Path) -> None:
        self.specs_ = parse_schema(self.schema)
        self._setup()
        self.pool_.load(folder, config, tensors, index=self.k > 0)
        check_same_backend(self.provenance_.base, self.backend_, self.model, folder)

    def _card(self) -> dict[str, Any]:
        return {
            "Method": "LLM answer constrained by a JSON schema, values normalised"
            + (" and located in the text (no evidence: missing)" if self.require_evidence else ""),
            "Generator": f"{self.model} ({self.runtime} runtime)",
            "Fields": {s.name: s.type for s in self.specs_},
            "Demonstrations": (
                f"{self.k} per document from {len(self.pool_.texts)} ({self.retriever})"
                if self.k
                else "none (zero-shot)"
            ),
            "Confidence": self.confidence_method,
        }


def _key(record: Mapping[str, Any]) -> tuple[Any, Any]:
    """What two answers must share to count as the same vote: value and currency."""
    return record.get("value"), record.get("currency")
