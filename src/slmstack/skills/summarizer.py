"""``Summarizer``: a bounded-length summary, or a structured record, from a small generator.

Free text (default): at most ``max_sentences`` sentences; the prompt asks for the bound
and the output is cut to it (with a warning). Structured (``schema=...``): a JSON object
filled under a JSON-schema constraint (:data:`SUPPORT_TICKET_SCHEMA`), checked against it
(an off-schema record abstains ``invalid_output``), in ``Prediction.data``.

By default ``fit`` trains nothing: it keeps up to ``few_shot`` (text, reference summary)
pairs as in-context demonstrations (at most half the input window). With ``tune="lora"``
it trains a LoRA adapter on the pairs instead (:mod:`._summary_lora`, transformers;
``lora={...}`` overrides its settings); ``adapter=DIR`` attaches one trained elsewhere.
``save`` copies the adapter into the skill folder, hashed and verified on load. Inputs
longer than ``max_input_tokens`` (less the demonstrations) are cut and reported in
``Prediction.warnings``, never silently.

A summary that repeats its input is not a summary: a free-text summary that copies its
input (:mod:`._copying`) is retried once with a stricter prompt (:mod:`.summary_text`),
then the skill abstains with ``"copied_input"`` and the evidence in ``warnings`` and
``data``, which a workflow trace shows. ``data`` holds ``copied_share``, ``attempts`` and
``model`` (the model that answered: a remote backend's fallback, after a failover).
"""

from __future__ import annotations

import shutil
import time
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from slmstack.artifacts import data_hash, library_versions
from slmstack.backends import answered_by, failover_warnings, total_usage
from slmstack.backends.base import Backend, Completion, CompletionRequest, parse_json_output
from slmstack.data.readers import read_examples
from slmstack.data.validation import drop_duplicates
from slmstack.errors import (
    ArtifactError,
    BackendError,
    ConfigError,
    DataError,
    DataWarning,
    NotStreamableError,
)
from slmstack.skills._copying import check_copy
from slmstack.skills._llm_prompts import max_tokens_check
from slmstack.skills._record_check import record_problems
from slmstack.skills._streaming import TextStream, bounded_pieces
from slmstack.skills._summary_lora import (
    check_lora_overrides,
    check_tuning,
    generator_record,
    serve_backend,
    train_summary_adapter,
)
from slmstack.skills.base import Skill, Tensors, check_texts
from slmstack.skills.params import Check, Interval, runtime_check
from slmstack.skills.summary_text import (
    SUPPORT_TICKET_SCHEMA,
    bound_sentences,
    cut_to_tokens,
    fit_shots,
    join_outputs,
    split_sentences,
    strict_shots,
    summary_messages,
)
from slmstack.types import Example, Prediction, Usage

__all__ = ["SUPPORT_TICKET_SCHEMA", "Summarizer", "join_outputs", "split_sentences"]

_TOKENS_PER_SENTENCE = 40  # generous for support-ticket prose; bounds max_tokens
_ADAPTER_DIR = "adapter"  # where save puts the adapter, relative to the skill folder


def _total(calls: Sequence[Completion], start: float) -> Usage:
    """Tokens of every generation call (by the model that answered), and the wall time."""
    return total_usage(calls, (time.perf_counter() - start) * 1000)


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
    reads_documents = True
    trains_on_nothing = True
    also_trains_on_data = True  # few_shot demonstrations, or tune="lora" pairs
    fitted_attribute = "backend_"
    constraints: ClassVar[Mapping[str, Check]] = {
        "max_sentences": Interval(int, 1, None),
        "runtime": runtime_check,
        "few_shot": Interval(int, 0, None),
        "max_input_tokens": Interval(int, 16, None),
        "max_tokens": max_tokens_check,
        "schema": _schema_check,
        "temperature": Interval(float, 0, None),
        "max_copied": _share_check,
        "lora": check_lora_overrides,
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
        tune: Literal["none", "lora"] = "none",  # 'lora': fit trains an adapter on the examples
        lora: Mapping[str, Any] | None = None,  # LoraSettings overrides for tune='lora'
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
        self.tune = tune
        self.lora = lora
        self.max_input_tokens = max_input_tokens
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.max_copied = max_copied
        self.seed = seed

    def _check_params(self) -> None:
        super()._check_params()
        check_tuning(self.get_params())

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
        reference summary (or, in structured mode, the reference JSON). With
        ``tune='lora'`` a LoRA adapter is trained on the examples (at least 2; a progress
        bar shows the steps) and attached; its training is recorded in
        ``provenance_.metrics`` (``lora_*``).
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
        metrics: dict[str, float] = {}
        self.adapter_: Path | None = None if self.adapter is None else Path(self.adapter)
        if self.tune == "lora":  # the adapter goes to a temporary folder; save copies it
            self.adapter_, metrics = train_summary_adapter(
                str(self.model), [(ex.text, ex.label) for ex in examples],
                max_sentences=self.max_sentences, instructions=self.instructions,
                overrides=self.lora, seed=self.seed,
            )  # fmt: skip
            weakref.finalize(self, shutil.rmtree, self.adapter_, ignore_errors=True)
        self.backend_ = self._make_backend(self.adapter_)
        self.backend_.count_tokens("")  # every input is measured: fail now if it cannot count
        self.shots_, dropped_shots = fit_shots(
            self.backend_.count_tokens, self.shots_, self.max_input_tokens
        )
        if dropped_shots:
            warnings.warn(dropped_shots, DataWarning, stacklevel=2)
        self.provenance_ = self._provenance(
            base=generator_record(self.model, self.runtime, self.backend_, self.adapter_,
                                  trained=self.tune == "lora"),
            data_sha256=data_hash((ex.text, ex.label) for ex in examples),
            rows=len(examples), duplicates_dropped=dropped, seconds=time.perf_counter() - start,
            metrics=metrics,
        )  # fmt: skip
        self.provenance_.versions.update(library_versions(["llama-cpp-python", "peft"]))
        return self

    def _make_backend(self, adapter: Path | None) -> Backend:
        if isinstance(self.model, Backend):
            return self.model
        return serve_backend(self.model, self.runtime, self.backend_options or {}, adapter)

    # ------------------------------------------------------------------ predicting
    def _budget(self) -> int:
        if self.max_tokens is not None:
            return self.max_tokens
        fields = len(self.schema["properties"]) if self.schema else 0  # checked non-empty
        return (48 * fields if fields else _TOKENS_PER_SENTENCE * self.max_sentences) + 16

    def _fit_input(self, text: str) -> tuple[str, str | None]:
        """Cut ``text`` to the window the demonstrations leave; the text and a warning."""
        count = self.backend_.count_tokens
        room = self.max_input_tokens - sum(count(a) + count(b) for a, b in self.shots_)
        return cut_to_tokens(count, text, room)

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
        request, completion = self._generate(body, warnings)
        calls = [completion]
        if self.schema is not None:
            try:
                record = parse_json_output(completion, request)
            except BackendError as exc:
                return Prediction(abstained="invalid_output", usage=_total(calls, start),
                                  warnings=(*warnings, str(exc)))  # fmt: skip
            wrong = record_problems(self.schema, record)
            if wrong:  # a server that ignores the schema; the record is not what was asked
                return Prediction(abstained="invalid_output", usage=_total(calls, start),
                                  warnings=(*warnings, "; ".join(wrong)))  # fmt: skip
            return Prediction(data=record, usage=_total(calls, start), warnings=tuple(warnings))
        summary = self._shorten(completion, request.max_tokens, warnings)
        check = check_copy(summary, body, limit=self.max_copied, shots=self.shots_)
        if check.copied:
            # A copy is not a summary: ask once more, forbidding it, then abstain.
            warnings.append(f"the summary repeated its input ({check.why}); retried with a "
                            "stricter prompt")  # fmt: skip
            request, completion = self._generate(body, warnings, strict=True)
            calls.append(completion)
            summary = self._shorten(completion, request.max_tokens, warnings)
            shots = strict_shots(self.shots_)  # copying the stricter prompt's demo is no better
            check = check_copy(summary, body, limit=self.max_copied, shots=shots)
            if check.copied or not summary:
                warnings.append(f"the retry repeated its input too ({check.why})" if summary
                                else "the retry was empty")  # fmt: skip
                data = {**check.to_dict(), "attempts": 2, "rejected": summary}
                usage = _total(calls, start)
                return Prediction(abstained="copied_input", data=data, usage=usage,
                                  warnings=tuple(warnings))  # fmt: skip
        usage = _total(calls, start)
        if not summary:
            return Prediction(abstained="empty_output", usage=usage, warnings=tuple(warnings))
        data = {"copied_share": check.share, "attempts": len(calls), "model": answered_by(calls)}
        return Prediction(text=summary, data=data, usage=usage, warnings=tuple(warnings))

    def _generate(
        self, body: str, warnings: list[str], *, strict: bool = False
    ) -> tuple[CompletionRequest, Completion]:
        request = self._request(body, strict=strict)
        completion = self.backend_.complete(request)
        warnings += failover_warnings([completion])
        return request, completion

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
        """The summary of one text in pieces, as generated (a ``TextStream``: it counts them).

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
        request = self._request(self._fit_input(text)[0])
        pieces = bounded_pieces(self.backend_.stream(request), max_sentences=self.max_sentences,
                                split=split_sentences)  # fmt: skip
        prompt = "\n".join(m.content for m in request.messages)
        return TextStream(pieces, count=self.backend_.count_tokens, prompt=prompt)

    def _shorten(self, completion: Completion, max_tokens: int, warnings: list[str]) -> str:
        """The completion on one line, cut to ``max_sentences`` (reported in ``warnings``)."""
        summary, cut = bound_sentences(completion.text, self.max_sentences)
        if cut:
            warnings.append(cut)
        elif completion.finish_reason == "length":
            warnings.append(f"generation stopped at max_tokens={max_tokens}")
        return summary

    # ------------------------------------------------------------------ persistence
    def _saved_params(self) -> dict[str, Any]:
        # The adapter is saved inside the skill folder (a relative path there), and the
        # schema and LoRA settings as plain JSON objects.
        return {
            **self.get_params(),
            "adapter": None if self.adapter is None else _ADAPTER_DIR,
            "schema": None if self.schema is None else dict(self.schema),
            "lora": None if self.lora is None else dict(self.lora),
        }

    def _state(self) -> tuple[dict[str, Any], Tensors]:
        if isinstance(self.model, Backend):
            raise ConfigError(
                f"this Summarizer runs on a {type(self.model).__name__} object, which cannot be "
                "saved. Build it with a model alias or path (model='smollm2') to save it."
            )
        return {"shots": [list(s) for s in self.shots_]}, {}

    def _write_extra(self, folder: Path) -> None:
        if self.adapter_ is not None:
            shutil.copytree(self.adapter_, folder / _ADAPTER_DIR)

    def _restore(self, config: Mapping[str, Any], tensors: Tensors, folder: Path) -> None:
        if self.adapter is not None:
            self.adapter = str(folder / _ADAPTER_DIR)
        tuned = self.adapter is not None or self.tune == "lora"
        self.adapter_ = folder / _ADAPTER_DIR if tuned else None
        self.shots_ = [(str(a), str(b)) for a, b in config["shots"]]
        self.backend_ = self._make_backend(self.adapter_)
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
            "LoRA adapter": "none" if self.adapter_ is None else
            f"{_ADAPTER_DIR}/ (files hashed in config.json)" + (
                f", trained by fit on {self.provenance_.rows} examples" if self.tune == "lora"
                else ""),
        }  # fmt: skip
