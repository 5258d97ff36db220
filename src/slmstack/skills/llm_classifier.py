"""``LLMClassifier``: an LLM (local or remote) as a text classifier, behind the skill contract.

It exists so an LLM and a fine-tuned SLM can be compared on the same data with
``slmstack eval``, and so a workflow can use an LLM as a classification tier. The method
(see :mod:`._llm_prompts`): the label list (with optional descriptions) in the system
prompt; the ``k`` most similar training examples as demonstrations, most similar last,
where a small model pays most attention; the answer constrained by a JSON schema whose
``label`` is an ``enum`` of the labels, so the model cannot answer outside the set.
``k=0`` is zero-shot. An answer outside the set (a backend that ignores schemas)
abstains with ``"invalid_output"``; it is never mapped to a near label.

Confidence is the label's probability from the backend's log-probabilities, or the
share of votes over ``n_samples`` sampled answers; ``data["confidence_method"]`` says
which. ``fit`` trains nothing: it keeps the label set and the demonstration pool (and the
pool's sentence vectors), so a saved classifier is JSON plus one small tensor file plus
the name of its generator. Nothing calls a paid API unless ``runtime``/``backend_options``
name one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from slmstack.artifacts import data_hash, library_versions
from slmstack.backends.base import Backend, ChatMessage, failover_warnings
from slmstack.data.validation import drop_duplicates, validate_examples
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
from slmstack.skills.kinds import LabelledTexts
from slmstack.skills.params import Check, Interval, runtime_check
from slmstack.types import Example, LabelScore, Prediction, Usage

_ASK = "Text: "


def _labels_check(value: Any) -> str | None:
    ok = value is None or (
        isinstance(value, list)
        and len(value) >= 2
        and all(isinstance(v, str) and v.strip() for v in value)
        and len(set(value)) == len(value)
    )
    return None if ok else "None or a list of at least two distinct, non-empty label strings"


def _descriptions_check(value: Any) -> str | None:
    ok = value is None or (
        isinstance(value, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    )
    return None if ok else "None or a dict of label to description (str to str)"


class LLMClassifier(LabelledTexts, Skill):
    """Classify texts with an LLM prompted with the labels and retrieved examples.

    Example:
        >>> from slmstack import LLMClassifier, read_examples
        >>> clf = LLMClassifier(model="smollm2", k=8, retriever="tfidf")  # doctest: +SKIP
        >>> clf.fit(read_examples("intents.csv"))  # doctest: +SKIP
        >>> p = clf.predict(["my card has not arrived"])[0]  # doctest: +SKIP
        >>> p.label, p.data["confidence_method"]  # doctest: +SKIP
        ('card_arrival', 'self_consistency')
    """

    skill_name = "slmstack.LLMClassifier.v1"
    produces = frozenset({"label", "confidence", "scores", "data"})
    fitted_attribute = "classes_"
    constraints: ClassVar[Mapping[str, Check]] = {
        "model": model_check,
        "runtime": runtime_check,
        "backend_options": json_object_check,
        "labels": _labels_check,
        "label_descriptions": _descriptions_check,
        "k": Interval(int, 0, None, note="(0 is zero-shot)"),
        "n_samples": Interval(int, 2, None),
        "sample_temperature": Interval(float, 0, None, closed="neither"),
        "max_tokens": max_tokens_check,
    }  # fmt: skip

    def __init__(
        self,
        *,
        model: str | Backend = "smollm2",  # generator alias, GGUF file, remote name, Backend
        runtime: str = "llama_cpp",  # llama_cpp, transformers or openai (needs a base_url)
        backend_options: dict[str, Any] | None = None,  # e.g. base_url, api_key_env, n_ctx
        labels: list[str] | None = None,  # the label set; default: the training labels
        label_descriptions: dict[str, str] | None = None,  # shown beside each label
        instructions: str = "",  # appended to the system prompt
        k: int = 8,  # retrieved demonstrations; 8 fit a 2,048-token window with 77 labels
        retriever: Retriever = "embedding",  # how demonstrations are found; tfidf needs no torch
        encoder: str = "minilm",  # sentence encoder of the embedding retriever
        confidence_method: ConfidenceMethod = "auto",  # logprobs if given, else sampling; greedy
        n_samples: int = 5,  # self-consistency calls per text: 5 votes, steps of 0.2
        sample_temperature: float = 0.7,  # diverse enough to disagree when unsure
        max_tokens: int | None = None,  # default: enough for the longest label in JSON
        seed: int = 0,
        allow_pickle: bool = False,
    ):
        self.model = model
        self.runtime = runtime
        self.backend_options = backend_options
        self.labels = labels
        self.label_descriptions = label_descriptions
        self.instructions = instructions
        self.k = k
        self.retriever = retriever
        self.encoder = encoder
        self.confidence_method = confidence_method
        self.n_samples = n_samples
        self.sample_temperature = sample_temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self.allow_pickle = allow_pickle

    def evaluate(self, data: Path, **options: Any) -> dict[str, Any]:
        """Accuracy, macro-F1, per-class report, speed and tokens; each text is sent once."""
        from slmstack.evaluation.classification import evaluate_classifier

        once = PredictOnce(self)
        return once.finish(evaluate_classifier(once, data, **options))

    def _check_params(self) -> None:
        super()._check_params()
        unknown = sorted(set(self.label_descriptions or {}) - set(self.labels or []))
        if self.labels is not None and unknown:
            raise ConfigError(
                f"label_descriptions describe {unknown}, which are not in labels "
                f"{self.labels}. Fix the names or add the labels."
            )

    # ------------------------------------------------------------------ fitting
    def fit(self, examples: Sequence[Example]) -> Self:
        """Keep the label set and the demonstration pool; nothing is trained.

        With ``labels`` set, ``examples`` may be empty (zero-shot); otherwise the label
        set is the sorted set of their labels.
        """
        self._check_params()
        if isinstance(examples, str | Path):
            raise ConfigError("fit() takes Example objects; read files with read_examples()")
        start = time.perf_counter()
        examples, dropped = drop_duplicates(list(examples))
        if examples:
            validate_examples(examples)
        elif self.labels is None:
            raise DataError(
                "no examples and no labels: pass labelled examples, or labels=[...] for a "
                "zero-shot classifier"
            )
        labels = list(self.labels) if self.labels is not None else sorted(
            {ex.label for ex in examples})  # fmt: skip
        outside = sorted({ex.label for ex in examples} - set(labels))
        if outside:
            first = next(ex for ex in examples if ex.label in outside)
            raise DataError(
                f"{first.source or 'the examples'}: labels {outside} are not in labels="
                f"{labels}; add them to labels or drop those rows"
            )
        if len(labels) < 2:
            raise DataError(f"a classifier needs at least two labels; got {labels}")
        unknown = sorted(set(self.label_descriptions or {}) - set(labels))
        if unknown:
            raise ConfigError(f"label_descriptions describe {unknown}, which no example has")
        self.classes_: list[str] = labels
        self._setup()
        self.pool_.build([(ex.text, ex.label) for ex in examples], index=self.k > 0)
        self.provenance_ = self._provenance(
            base=backend_record(self.model, self.runtime, self.backend_),
            data_sha256=data_hash((ex.text, ex.label) for ex in examples),
            rows=len(examples), duplicates_dropped=dropped,
            seconds=time.perf_counter() - start,
        )  # fmt: skip
        self.provenance_.versions.update(library_versions(["llama-cpp-python"]))
        return self

    def _setup(self) -> None:
        """Backend, an empty demonstration pool, schema and caller (for fit and load)."""
        self.backend_ = make_backend(self.model, self.runtime, self.backend_options)
        self.pool_ = ShotPool(self.retriever, self.encoder, allow_pickle=self.allow_pickle)
        self.schema_ = {
            "type": "object",
            "properties": {"label": {"enum": list(self.classes_)}},
            "required": ["label"],
        }
        # '{"label": "…"}' costs about 8 tokens around the label, and a token is at least
        # one byte, so this bound can never cut a label short.
        longest = max(len(label.encode("utf-8")) for label in self.classes_)
        self.caller_ = LLMCaller(
            self.backend_, method=self.confidence_method, n_samples=self.n_samples,
            temperature=self.sample_temperature, seed=self.seed,
            max_tokens=self.max_tokens or longest + 16,
        )  # fmt: skip

    # ------------------------------------------------------------------ prompting
    def _system(self) -> str:
        notes = self.label_descriptions or {}
        listed = "\n".join(
            f"- {label}: {notes[label]}" if label in notes else f"- {label}"
            for label in self.classes_
        )
        system = (
            "You are a text classifier. Choose exactly one label for the text from this "
            f"list:\n{listed}\n"
            'Answer with JSON only: {"label": "<one label from the list>"}.'
        )
        return f"{system} {self.instructions}" if self.instructions else system

    def messages(self, text: str, shots: Sequence[int] = ()) -> list[ChatMessage]:
        """The chat sent for ``text`` with pool demonstrations ``shots`` (most similar first)."""
        demos = [(self.pool_.texts[i], json.dumps({"label": self.pool_.answers[i]},
                                                  ensure_ascii=False))
                 for i in reversed(list(shots))]  # fmt: skip
        return chat(self._system(), demos, text, _ASK)

    # ------------------------------------------------------------------ predicting
    def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One label per text, with its confidence and how it was measured."""
        start = time.perf_counter()
        neighbours = self.pool_.nearest(texts, self.k)
        retrieval_ms = per_item_ms(start, len(texts))
        out = []
        for text, shots in zip(texts, neighbours, strict=True):
            t0 = time.perf_counter()
            answers = self.caller_.ask(self.messages(text, shots), self.schema_)
            usage = answers.usage(retrieval_ms + (time.perf_counter() - t0) * 1000)
            out.append(self._read(answers, usage, len(shots)))
        return out

    def _label_of(self, text: str) -> str | None:
        try:
            label = json.loads(text).get("label")
        except (json.JSONDecodeError, AttributeError):
            return None
        return label if isinstance(label, str) and label in self.classes_ else None

    def _read(self, answers: Answers, usage: Usage, n_shots: int) -> Prediction:
        data: dict[str, Any] = {"confidence_method": answers.method, "shots": n_shots,
                                "model": answers.model}  # fmt: skip
        labels = [self._label_of(c.text) for c in answers.completions]
        valid = [label for label in labels if label is not None]
        warnings = failover_warnings(answers.completions)
        if len(valid) < len(labels):
            bad = next(c.text for c, lb in zip(answers.completions, labels, strict=True)
                       if lb is None)  # fmt: skip
            warnings.append(
                f"{len(labels) - len(valid)} of {len(labels)} answers were not one of the "
                f"labels (first: {bad[:80]!r}); the backend did not honour the JSON schema"
            )
        if not valid:
            return Prediction(abstained="invalid_output", data=data, usage=usage,
                              warnings=tuple(warnings))  # fmt: skip
        if answers.method == "logprobs":
            confidence = value_probability(answers.completions[0], "label")
            label = valid[0]
            scores: tuple[LabelScore, ...] = (LabelScore(label, confidence),)
        else:
            winner, counts = vote(valid)
            label = str(winner)
            # Shares of all answers, so invalid ones lower the confidence, never raise it.
            confidence = counts[winner] / len(labels)
            data["votes"] = {str(k): n for k, n in counts.most_common()}
            scores = tuple(LabelScore(str(k), n / len(labels)) for k, n in counts.most_common())
        return Prediction(label=label, confidence=confidence, scores=scores, data=data,
                          usage=usage, warnings=tuple(warnings))  # fmt: skip

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, Any], Tensors]:
        refuse_object_save(self.model, type(self).__name__)
        config, tensors = self.pool_.state()
        return {"labels": self.classes_, **config}, tensors

    def _write_extra(self, folder: Path) -> None:
        self.pool_.write(folder)

    def _restore(self, config: Mapping[str, Any], tensors: Tensors, folder: Path) -> None:
        self.classes_ = [str(x) for x in config["labels"]]
        self._setup()
        self.pool_.load(folder, config, tensors, index=self.k > 0)
        check_same_backend(self.provenance_.base, self.backend_, self.model, folder)

    def _card(self) -> dict[str, Any]:
        return {
            "Method": "LLM prompted with the label list and retrieved demonstrations; "
            "output constrained to the labels by a JSON schema",
            "Generator": f"{self.model} ({self.runtime} runtime)",
            "Labels": ", ".join(self.classes_[:20]) + (" ..." if len(self.classes_) > 20 else ""),
            "Demonstrations": (
                f"{self.k} per text from {len(self.pool_.texts)} examples ({self.retriever})"
                if self.k
                else "none (zero-shot)"
            ),
            "Confidence": self.confidence_method,
        }
