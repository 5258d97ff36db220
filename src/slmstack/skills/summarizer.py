"""``Summarizer``: a bounded-length summary, or a structured record, from a small generator.

Two modes:

* free text (default): at most ``max_sentences`` sentences. The prompt asks for the
  bound and the output is cut to it (with a warning), so the bound always holds;
* structured (``schema=...``): a JSON object filled under a JSON-schema constraint, for
  example :data:`SUPPORT_TICKET_SCHEMA` ``{issue, product, sentiment, requested_action}``;
  the record goes to ``Prediction.data``.

``fit`` trains nothing: it captures the configuration and keeps up to ``few_shot``
(text, reference summary) pairs as in-context demonstrations. A LoRA adapter trained
with ``slmstack train lora`` can be attached with ``adapter=DIR`` (transformers runtime);
``save`` copies it into the skill folder, where its files are hashed and verified on
load like every other file. Inputs longer than ``max_input_tokens`` are cut and reported
in ``Prediction.warnings``, never silently.

A summary that repeats its input is not a summary: a free-text summary that copies its
input (:mod:`._copying`) is retried once with a stricter prompt (:mod:`.summary_text`),
then the skill abstains with ``"copied_input"`` and the evidence in ``warnings`` and
``data``, which a workflow trace shows. ``data`` holds ``copied_share`` and ``attempts``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from slmstack.artifacts import data_hash, library_versions
from slmstack.backends.base import (
    Backend,
    Completion,
    CompletionRequest,
    parse_json_output,
)
from slmstack.backends.factory import load_backend
from slmstack.data.readers import read_examples
from slmstack.data.validation import drop_duplicates
from slmstack.errors import ArtifactError, BackendError, ConfigError, DataError, NotStreamableError
from slmstack.models.catalog import known_models
from slmstack.skills._copying import check_copy
from slmstack.skills._streaming import bounded_pieces
from slmstack.skills.base import Skill, Tensors, check_texts
from slmstack.skills.params import Check, Interval
from slmstack.skills.summary_text import (
    SUPPORT_TICKET_SCHEMA,
    join_outputs,
    split_sentences,
    strict_shots,
    summary_messages,
)
from slmstack.types import Example, Prediction, Usage

__all__ = ["SUPPORT_TICKET_SCHEMA", "Summarizer", "join_outputs", "split_sentences"]

_TOKENS_PER_SENTENCE = 40  # generous for support-ticket prose; bounds max_tokens
_ADAPTER_DIR = "adapter"  # where save puts the adapter, relative to the skill folder


def _total(parts: Sequence[Usage], start: float) -> Usage:
    """Tokens of every generation call, and the wall time since ``start``."""
    return Usage(sum(u.input_tokens for u in parts), sum(u.output_tokens for u in parts),
                 (time.perf_counter() - start) * 1000)  # fmt: skip


def _max_tokens_check(value: Any) -> str | None:
    ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)
    return None if ok else "None or an int >= 1"


def _share_check(value: Any) -> str | None:
    ok = value is None or (Interval(float, 0, 1, closed="right").allows(value))
    return None if ok else "None or a float in (0, 1]"


def _schema_check(value: Any) -> str | None:
    ok = value is None or (isinstance(value, Mapping) and bool(value.get("properties")))
    return None if ok else "None or a JSON schema object with 'properties'"


class Summarizer(Skill):
    """Summarise texts with a local generator (or any :class:`Backend`).

    Example:
        >>> from slmstack import Summarizer
        >>> s = Summarizer(model="smollm2", max_sentences=2).fit([])  # doctest: +SKIP
        >>> s.predict(["My order 123 arrived broken. I want a replacement."])[0].text
        ... # doctest: +SKIP
        'The customer received a broken order and wants a replacement.'
        >>> served = Summarizer(model="smollm2", runtime="openai", backend_options={
        ...     "base_url": "http://127.0.0.1:8080/v1", "api_key_env": None,
        ...     "tokenizer": "smollm2"})  # any OpenAI-compatible server  # doctest: +SKIP
    """

    skill_name = "slmstack.Summarizer.v1"
    produces = frozenset({"text", "data"})
    trains_on_nothing = True
    fitted_attribute = "backend_"
    constraints: ClassVar[Mapping[str, Check]] = {
        "max_sentences": Interval(int, 1, None),
        "few_shot": Interval(int, 0, None),
        "max_input_tokens": Interval(int, 16, None),
        "max_tokens": _max_tokens_check,
        "schema": _schema_check,
        "temperature": Interval(float, 0, None),
        "max_copied": _share_check,
    }

    def __init__(
        self,
        *,
        model: str | Backend = "smollm2",  # generator alias, GGUF file, folder or a Backend
        runtime: str = "llama_cpp",  # 'transformers' runs LoRA adapters; 'openai': any API
        backend_options: dict[str, Any] | None = None,  # for load_backend: base_url, tokenizer, ...
        max_sentences: int = 3,  # upper bound on the summary; longer outputs are cut
        schema: Mapping[str, Any] | None = None,  # JSON schema: fill a record, not prose
        instructions: str = "",  # appended to the system prompt
        few_shot: int = 0,  # fit examples kept as in-context demonstrations
        adapter: str | Path | None = None,  # LoRA adapter folder (runtime='transformers')
        max_input_tokens: int = 1536,  # leaves room for the answer in a 2,048-token window
        max_tokens: int | None = None,  # default: about 40 tokens per allowed sentence
        temperature: float = 0.0,  # greedy: the same input gives the same summary
        max_copied: float | None = 0.8,  # copied share that makes a copy; None: no check
        seed: int = 0,
    ):
        self.model = model
        self.runtime = runtime
        self.backend_options = backend_options
        self.max_sentences = max_sentences
        self.schema = schema
        self.instructions = instructions
        self.few_shot = few_shot
        self.adapter = adapter
        self.max_input_tokens = max_input_tokens
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.max_copied = max_copied
        self.seed = seed

    def _check_params(self) -> None:
        super()._check_params()
        if self.adapter is not None and self.runtime != "transformers":
            raise ConfigError(
                "The 'runtime' parameter of Summarizer must be 'transformers' when an adapter "
                f"is set (llama.cpp runs no LoRA). Got {self.runtime!r} instead."
            )
        for name in ("adapter", "backend_options"):
            if isinstance(self.model, Backend) and getattr(self, name):
                raise ConfigError(
                    f"The {name!r} parameter of Summarizer must be None when model is a Backend "
                    f"object. Got {getattr(self, name)!r} instead."
                )

    @classmethod
    def read_training_data(
        cls, path: Path, *, text_column: str = "text", label_column: str = "summary"
    ) -> list[Example]:
        """Demonstrations: texts and reference summaries, from CSV, TSV or JSONL."""
        return read_examples(path, text_column=text_column, label_column=label_column,
                             validate=False)  # fmt: skip

    def evaluate(self, data: Path, **options: Any) -> dict[str, Any]:
        """ROUGE-1/2/L against reference summaries, abstentions and speed."""
        from slmstack.evaluation.summaries import evaluate_summarizer

        return evaluate_summarizer(self, data, **options)

    # ------------------------------------------------------------------ fitting
    def fit(self, examples: Sequence[Example] = ()) -> Self:
        """Capture the configuration and keep ``few_shot`` (text, summary) demonstrations.

        Pass ``[]`` when no demonstrations are wanted. ``Example.label`` holds the
        reference summary (or, in structured mode, the reference JSON).
        """
        self._check_params()
        start = time.perf_counter()
        if isinstance(examples, str):
            raise ConfigError("fit() takes a list of Example(text, summary), not a string")
        for i, ex in enumerate(examples):
            if not isinstance(ex, Example) or not ex.text.strip() or not ex.label.strip():
                raise DataError(f"example #{i} must be an Example with a text and a summary")
        examples, dropped = drop_duplicates(examples)
        self.shots_ = [(ex.text, ex.label) for ex in examples[: self.few_shot]]
        self.backend_ = self._make_backend(self.adapter)
        self.backend_.count_tokens("")  # every input is measured: fail now if it cannot count
        self.provenance_ = self._provenance(
            base=self._base_record(), data_sha256=data_hash((ex.text, ex.label) for ex in examples),
            rows=len(examples), duplicates_dropped=dropped, seconds=time.perf_counter() - start,
        )  # fmt: skip
        self.provenance_.versions.update(library_versions(["llama-cpp-python", "peft"]))
        return self

    def _base_record(self) -> dict[str, Any]:
        """The generator (and adapter) this skill runs on, for provenance and drift checks."""
        sha = self.backend_.model_sha256
        if isinstance(self.model, Backend):
            name, runtime = getattr(self.model, "name", type(self.model).__name__), "object"
        else:
            name, runtime = str(self.model), self.runtime
        known = known_models().get(name)
        # 'ref' only with a hash: a saved base reference must be verifiable on load.
        record: dict[str, Any] = {"ref" if isinstance(sha, str) else "model": name,
                                  "runtime": runtime, "sha256": sha,
                                  "licence": known.licence if known else "unknown"}  # fmt: skip
        if self.adapter is not None:
            from slmstack.training.adapters import read_adapter_meta

            record["adapter_sha256"] = read_adapter_meta(self.adapter)["weights_sha256"]
        return record

    def _make_backend(self, adapter: str | Path | None) -> Backend:
        if isinstance(self.model, Backend):
            return self.model
        options = self.backend_options or {}
        if adapter is None:
            return load_backend(self.model, runtime=self.runtime, **options)
        from slmstack.backends.transformers_lm import TransformersBackend
        from slmstack.training.adapters import read_adapter_meta

        # Adapters are named by their weights' hash, so skills that use the same adapter
        # share it, and several adapters share one base model in memory.
        base = load_backend(self.model, runtime="transformers", **options)
        if not isinstance(base, TransformersBackend):
            raise ConfigError(f"runtime 'transformers' gave a {type(base).__name__}")
        name = "a" + str(read_adapter_meta(adapter)["weights_sha256"])[:12]
        if name not in base.adapters():
            base.add_adapter(name, adapter)
        return base.with_adapter(name)

    # ------------------------------------------------------------------ predicting
    def _budget(self) -> int:
        if self.max_tokens is not None:
            return self.max_tokens
        if self.schema is not None:
            return 48 * len(self.schema.get("properties", {})) + 16
        return _TOKENS_PER_SENTENCE * self.max_sentences + 16

    def _fit_input(self, text: str) -> tuple[str, str | None]:
        """Cut ``text`` to ``max_input_tokens``; return it and a warning when cut."""
        n = self.backend_.count_tokens(text)
        if n <= self.max_input_tokens:
            return text, None
        cut = text
        while self.backend_.count_tokens(cut) > self.max_input_tokens:
            cut = cut[: int(len(cut) * 0.9 * self.max_input_tokens / n)]
            n = self.backend_.count_tokens(cut)
        return cut, (
            f"input truncated: {self.backend_.count_tokens(text)} tokens, the limit is "
            f"{self.max_input_tokens}; only the beginning was summarised"
        )

    def _request_schema(self) -> dict[str, Any] | None:
        if self.schema is None:
            return None
        # llama.cpp grammars may stop after the required keys only; ask for all of them.
        return {**self.schema, "required": list(self.schema["properties"])}

    def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One summary (``text``) or record (``data``) per input text."""
        return [self._one(t) for t in texts]

    def predict_outputs(self, outputs: Mapping[str, Prediction | str]) -> Prediction:
        """Summarise the outputs of earlier skills (see :func:`join_outputs`)."""
        return self.predict([join_outputs(outputs)])[0]

    def _one(self, text: str) -> Prediction:
        start = time.perf_counter()
        body, warning = self._fit_input(text)
        warnings = [warning] if warning else []
        request, completion = self._generate(body)
        usages = [completion.usage]
        if self.schema is not None:
            try:
                record = parse_json_output(completion, request)
            except BackendError as exc:
                return Prediction(abstained="invalid_output", usage=_total(usages, start),
                                  warnings=(str(exc),))  # fmt: skip
            return Prediction(data=record, usage=_total(usages, start), warnings=tuple(warnings))
        summary = self._shorten(completion, request.max_tokens, warnings)
        check = check_copy(summary, body, limit=self.max_copied)
        if check.copied:
            # A copy is not a summary: ask once more, forbidding it, then abstain.
            warnings.append(f"the summary repeated its input ({check.why}); retried with a "
                            "stricter prompt")  # fmt: skip
            request, completion = self._generate(body, strict=True)
            usages.append(completion.usage)
            summary = self._shorten(completion, request.max_tokens, warnings)
            # Copying a demonstration of the stricter prompt is no better.
            shown = "\n".join([body, *(f"{a}\n{b}" for a, b in strict_shots(self.shots_))])
            check = check_copy(summary, shown, limit=self.max_copied)
            if check.copied or not summary:
                warnings.append(f"the retry repeated its input too ({check.why})" if summary
                                else "the retry was empty")  # fmt: skip
                data = {**check.to_dict(), "attempts": 2, "rejected": summary}
                usage = _total(usages, start)
                return Prediction(abstained="copied_input", data=data, usage=usage,
                                  warnings=tuple(warnings))  # fmt: skip
        usage = _total(usages, start)
        if not summary:
            return Prediction(abstained="empty_output", usage=usage, warnings=tuple(warnings))
        data = {"copied_share": check.share, "attempts": len(usages)}
        return Prediction(text=summary, data=data, usage=usage, warnings=tuple(warnings))

    def _generate(self, body: str, *, strict: bool = False) -> tuple[CompletionRequest, Completion]:
        request = self._request(body, strict=strict)
        return request, self.backend_.complete(request)

    def _request(self, body: str, *, strict: bool = False) -> CompletionRequest:
        messages = summary_messages(
            body, max_sentences=self.max_sentences, schema=self.schema,
            instructions=self.instructions, shots=self.shots_, strict=strict,
        )  # fmt: skip
        return CompletionRequest(
            messages=messages, max_tokens=self._budget(),
            temperature=self.temperature, json_schema=self._request_schema(), seed=self.seed,
        )  # fmt: skip

    def stream(self, text: str) -> Iterator[str]:
        """The summary of one text in pieces, as generated: ``predict``'s text (greedy).

        Raises:
            NotStreamableError: with ``schema`` (a JSON record, parsed once generated) or
                ``max_copied`` set (a copy shows only in the whole summary).
        """
        self._require_fitted()
        if self.schema is not None or self.max_copied is not None:
            why = "fills a JSON record" if self.schema else "checks its summary for copies"
            raise NotStreamableError(
                f"this Summarizer {why} once it is generated, so it cannot stream it. Call "
                "predict(), or build it with schema=None and max_copied=None to stream."
            )
        check_texts([text])
        if not text.strip():
            return iter(())
        raw = self.backend_.stream(self._request(self._fit_input(text)[0]))
        return bounded_pieces(raw, max_sentences=self.max_sentences, split=split_sentences)

    def _shorten(self, completion: Completion, max_tokens: int, warnings: list[str]) -> str:
        """The completion on one line, cut to ``max_sentences`` (reported in ``warnings``)."""
        summary = " ".join(completion.text.split())
        sentences = split_sentences(summary)
        if len(sentences) > self.max_sentences:
            summary = " ".join(sentences[: self.max_sentences])
            warnings.append(f"summary cut from {len(sentences)} to {self.max_sentences} sentences")
        elif completion.finish_reason == "length":
            warnings.append(f"generation stopped at max_tokens={max_tokens}")
        return summary

    # ------------------------------------------------------------------ persistence
    def _saved_params(self) -> dict[str, Any]:
        # The adapter is saved inside the skill folder (a relative path there), and the
        # schema as a plain JSON object.
        return {
            **self.get_params(),
            "adapter": None if self.adapter is None else _ADAPTER_DIR,
            "schema": None if self.schema is None else dict(self.schema),
        }

    def _state(self) -> tuple[dict[str, Any], Tensors]:
        if isinstance(self.model, Backend):
            raise ConfigError(
                f"this Summarizer runs on a {type(self.model).__name__} object, which cannot be "
                "saved. Build it with a model alias or path (model='smollm2') to save it."
            )
        return {"shots": [list(s) for s in self.shots_]}, {}

    def _write_extra(self, folder: Path) -> None:
        if self.adapter is not None:
            shutil.copytree(self.adapter, folder / _ADAPTER_DIR)

    def _restore(self, config: Mapping[str, Any], tensors: Tensors, folder: Path) -> None:
        if self.adapter is not None:
            self.adapter = str(folder / _ADAPTER_DIR)
        self.shots_ = [(str(a), str(b)) for a, b in config["shots"]]
        self.backend_ = self._make_backend(self.adapter)
        saved = self.provenance_.base.get("sha256")
        now = self.backend_.model_sha256
        if saved is not None and saved != now:
            raise ArtifactError(
                f"{folder} was saved with generator {self.model!r} of sha256 {saved}, but that "
                f"reference now resolves to {now}. Install the original model."
            )

    def _card(self) -> dict[str, Any]:
        verified = (
            "its sha256 (under Base model) is checked on load"
            if self.provenance_.base.get("sha256")
            else "no sha256 (a remote or unhashed model), so it is not verified on load"
        )
        return {
            "Generator": f"{self.model} ({self.runtime} runtime); {verified}",
            "Output": (f"JSON with {', '.join(self.schema['properties'])}" if self.schema
                       else f"at most {self.max_sentences} sentences"),
            "Demonstrations": len(self.shots_),
            "LoRA adapter": f"{_ADAPTER_DIR}/ (files hashed in config.json)" if self.adapter
            else "none",
        }  # fmt: skip
