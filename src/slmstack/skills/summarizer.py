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
``save`` copies it into the skill folder. Inputs longer than ``max_input_tokens`` are
cut and reported in ``Prediction.warnings``, never silently.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from slmstack import registry
from slmstack.backends.base import (
    Backend,
    ChatMessage,
    CompletionRequest,
    parse_json_output,
)
from slmstack.backends.factory import load_backend
from slmstack.errors import ArtifactError, BackendError, ConfigError, DataError, NotFittedError
from slmstack.artifacts import (
    data_hash,
    library_versions,
    read_verified_config,
    write_config,
    write_model_card,
)
from slmstack.skills.base import Skill, check_texts
from slmstack.types import Example, Prediction, Usage

_NAME = "slmstack.Summarizer.v1"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9#])")
_TOKENS_PER_SENTENCE = 40  # generous for support-ticket prose; bounds max_tokens

SUPPORT_TICKET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "issue": {"type": "string", "description": "what went wrong, in a few words"},
        "product": {"type": "string", "description": "the product or service concerned"},
        "sentiment": {"enum": ["positive", "neutral", "negative"]},
        "requested_action": {"type": "string", "description": "what the customer asks for"},
    },
    "required": ["issue", "product", "sentiment", "requested_action"],
}


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences at ``.``/``!``/``?`` followed by a capital or digit."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def join_outputs(outputs: Mapping[str, Prediction | str]) -> str:
    """Render earlier skills' outputs as one text to summarise (``name: result`` lines)."""
    lines = []
    for name, out in outputs.items():
        if isinstance(out, str):
            value = out
        elif out.abstained:
            value = f"(no answer: {out.abstained})"
        elif out.text is not None:
            value = out.text
        elif out.data:
            value = "; ".join(f"{k}={v}" for k, v in out.data.items())
        elif out.label is not None:
            value = f"{out.label} (confidence {out.confidence:.2f})"
        else:
            value = ", ".join(f"{s.label}: {s.text}" for s in out.spans) or "(empty)"
        lines.append(f"{name}: {value}")
    return "\n".join(lines)


@registry.skills.register(_NAME)
class Summarizer(Skill):
    """Summarise texts with a local generator (or any :class:`Backend`).

    Example:
        >>> from slmstack import Summarizer
        >>> s = Summarizer(model="smollm2", max_sentences=2).fit([])  # doctest: +SKIP
        >>> s.predict(["My order 123 arrived broken. I want a replacement."])[0].text
        ... # doctest: +SKIP
        'The customer received a broken order and wants a replacement.'
    """

    skill_name = _NAME

    def __init__(
        self,
        *,
        model: str | Backend = "smollm2",
        runtime: str = "llama_cpp",
        max_sentences: int = 3,
        schema: Mapping[str, Any] | None = None,
        instructions: str = "",
        few_shot: int = 0,
        adapter: str | Path | None = None,
        max_input_tokens: int = 1536,  # leaves room for the answer in a 2,048-token window
        max_tokens: int | None = None,  # default: about 40 tokens per allowed sentence
        temperature: float = 0.0,  # greedy: the same input gives the same summary
        seed: int = 0,
    ):
        self.model = model
        self.runtime = runtime
        self.max_sentences = max_sentences
        self.schema = schema
        self.instructions = instructions
        self.few_shot = few_shot
        self.adapter = adapter
        self.max_input_tokens = max_input_tokens
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed

    _PARAMS = (
        "model", "runtime", "max_sentences", "schema", "instructions", "few_shot",
        "adapter", "max_input_tokens", "max_tokens", "temperature", "seed",
    )  # fmt: skip

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as passed to ``__init__``."""
        return {k: getattr(self, k) for k in self._PARAMS}

    def _check_params(self) -> None:
        def bad(name: str, allowed: str) -> ConfigError:
            return ConfigError(
                f"The {name!r} parameter of Summarizer must be {allowed}. "
                f"Got {getattr(self, name)!r} instead."
            )

        if not isinstance(self.max_sentences, int) or self.max_sentences < 1:
            raise bad("max_sentences", "an int >= 1")
        if not isinstance(self.few_shot, int) or self.few_shot < 0:
            raise bad("few_shot", "an int >= 0")
        if not isinstance(self.max_input_tokens, int) or self.max_input_tokens < 16:
            raise bad("max_input_tokens", "an int >= 16")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise bad("max_tokens", "None or an int >= 1")
        if self.schema is not None and (
            not isinstance(self.schema, Mapping) or not self.schema.get("properties")
        ):
            raise bad("schema", "None or a JSON schema object with 'properties'")
        if self.adapter is not None and self.runtime != "transformers":
            raise bad("runtime", "'transformers' when an adapter is set (llama.cpp runs no LoRA)")
        if isinstance(self.model, Backend) and self.adapter is not None:
            raise bad("adapter", "None when model is a Backend object")

    # ------------------------------------------------------------------ fitting
    def fit(self, examples: Sequence[Example] = ()) -> Self:
        """Capture the configuration and keep ``few_shot`` (text, summary) demonstrations.

        Pass ``[]`` when no demonstrations are wanted. ``Example.label`` holds the
        reference summary (or, in structured mode, the reference JSON).
        """
        self._check_params()
        if isinstance(examples, str):
            raise ConfigError("fit() takes a list of Example(text, summary), not a string")
        for i, ex in enumerate(examples):
            if not isinstance(ex, Example) or not ex.text.strip() or not ex.label.strip():
                raise DataError(f"example #{i} must be an Example with a text and a summary")
        self.shots_: list[tuple[str, str]] = [(ex.text, ex.label) for ex in examples][
            : self.few_shot
        ]
        self.data_sha256_ = data_hash((ex.text, ex.label) for ex in examples)
        self.backend_ = self._make_backend(self.adapter)
        self.model_sha256_ = self.backend_.model_sha256
        return self

    def _make_backend(self, adapter: str | Path | None) -> Backend:
        if isinstance(self.model, Backend):
            return self.model
        if adapter is None:
            return load_backend(self.model, runtime=self.runtime)
        from slmstack.backends.transformers_lm import TransformersBackend
        from slmstack.training.adapters import read_adapter_meta

        # Adapters are named by their weights' hash, so skills that use the same adapter
        # share it, and several adapters share one base model in memory.
        base = load_backend(self.model, runtime="transformers")
        if not isinstance(base, TransformersBackend):
            raise ConfigError(f"runtime 'transformers' gave a {type(base).__name__}")
        name = "a" + str(read_adapter_meta(adapter)["weights_sha256"])[:12]
        if name not in base.adapters():
            base.add_adapter(name, adapter)
        return base.with_adapter(name)

    # ------------------------------------------------------------------ predicting
    def _require_fitted(self) -> None:
        if not hasattr(self, "backend_"):
            raise NotFittedError(
                "This Summarizer is not fitted yet. Call fit([]) (or fit(examples) for "
                "few-shot demonstrations) or Summarizer.load(folder) first."
            )

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

    def _messages(self, text: str) -> list[ChatMessage]:
        if self.schema is None:
            n = self.max_sentences
            bound = "one sentence" if n == 1 else f"at most {n} sentences"
            system = (
                f"You summarise texts. Write {bound}. Use only facts stated in the text; "
                "do not add greetings, opinions or advice."
            )
            ask = f"Summarise this text in {bound}:\n\n"
        else:
            fields = ", ".join(self.schema["properties"])
            system = (
                "You extract information from texts as JSON. Use only facts stated in the "
                "text; write 'unknown' when the text does not say."
            )
            ask = f"Extract {fields} from this text:\n\n"
        if self.instructions:
            system += " " + self.instructions
        messages = [ChatMessage("system", system)]
        for shot_text, shot_summary in self.shots_:
            messages.append(ChatMessage("user", ask + shot_text))
            messages.append(ChatMessage("assistant", shot_summary))
        messages.append(ChatMessage("user", ask + text))
        return messages

    def _request_schema(self) -> dict[str, Any] | None:
        if self.schema is None:
            return None
        # llama.cpp grammars may stop after the required keys only; ask for all of them.
        return {**self.schema, "required": list(self.schema["properties"])}

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One summary (``text``) or record (``data``) per input text."""
        self._require_fitted()
        check_texts(texts)
        return [self._one(i, t) for i, t in enumerate(texts)]

    def predict_outputs(self, outputs: Mapping[str, Prediction | str]) -> Prediction:
        """Summarise the outputs of earlier skills (see :func:`join_outputs`)."""
        return self.predict([join_outputs(outputs)])[0]

    def _one(self, i: int, text: str) -> Prediction:
        if not isinstance(text, str):
            raise DataError(f"text #{i} is {type(text).__name__}, expected str")
        if not text.strip():
            return Prediction(abstained="empty_input")
        start = time.perf_counter()
        body, warning = self._fit_input(text)
        warnings = [warning] if warning else []
        request = CompletionRequest(
            messages=self._messages(body),
            max_tokens=self._budget(),
            temperature=self.temperature,
            json_schema=self._request_schema(),
            seed=self.seed,
        )
        completion = self.backend_.complete(request)
        usage = Usage(
            completion.usage.input_tokens,
            completion.usage.output_tokens,
            (time.perf_counter() - start) * 1000,
        )
        if self.schema is not None:
            try:
                record = parse_json_output(completion, request)
            except BackendError as exc:
                return Prediction(abstained="invalid_output", usage=usage, warnings=(str(exc),))
            return Prediction(data=record, usage=usage, warnings=tuple(warnings))
        summary = " ".join(completion.text.split())
        sentences = split_sentences(summary)
        if len(sentences) > self.max_sentences:
            summary = " ".join(sentences[: self.max_sentences])
            warnings.append(f"summary cut from {len(sentences)} to {self.max_sentences} sentences")
        elif completion.finish_reason == "length":
            warnings.append(f"generation stopped at max_tokens={request.max_tokens}")
        if not summary:
            return Prediction(abstained="empty_output", usage=usage, warnings=tuple(warnings))
        return Prediction(text=summary, usage=usage, warnings=tuple(warnings))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write config, demonstrations and (when set) the LoRA adapter to ``path``."""
        self._require_fitted()
        if isinstance(self.model, Backend):
            raise ConfigError(
                f"this Summarizer runs on a {type(self.model).__name__} object, which cannot be "
                "saved. Build it with a model alias or path (model='smollm2') to save it."
            )
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        files: list[str] = []
        params = self.get_params()
        if self.adapter is not None:
            target = folder / "adapter"
            if Path(self.adapter).resolve() != target.resolve():
                shutil.copytree(self.adapter, target, dirs_exist_ok=True)
            files = [f"adapter/{p.name}" for p in sorted(target.iterdir()) if p.is_file()]
            params["adapter"] = "adapter"  # relative to the skill folder
        config = {
            "skill": _NAME,
            "params": params,
            "shots": [list(s) for s in self.shots_],
            "model_sha256": self.model_sha256_,
            "data": {"sha256": self.data_sha256_},
            "versions": library_versions(["llama-cpp-python", "peft"]),
        }
        write_config(folder, config, files)
        write_model_card(
            folder,
            "Summarizer" + (" (structured)" if self.schema else ""),
            {
                "Generator": {
                    "model": self.model,
                    "runtime": self.runtime,
                    "sha256": self.model_sha256_,
                },
                "Output": (
                    f"JSON with {', '.join(self.schema['properties'])}"
                    if self.schema
                    else f"at most {self.max_sentences} sentences"
                ),
                "Demonstrations": len(self.shots_),
                "LoRA adapter": "adapter/" if self.adapter else "none",
                "Library versions": library_versions(["llama-cpp-python", "peft"]),
            },
        )
        return folder

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Rebuild a summarizer saved with :meth:`save` (adapter files verified by sha256)."""
        folder = Path(path)
        config = read_verified_config(folder, _NAME, "Summarizer")
        params = dict(config["params"])
        if params.get("adapter") is not None:
            params["adapter"] = str(folder / params["adapter"])
        self = cls(**params)
        self._check_params()
        self.shots_ = [(str(a), str(b)) for a, b in config["shots"]]
        self.data_sha256_ = str(config["data"]["sha256"])
        self.backend_ = self._make_backend(self.adapter)
        self.model_sha256_ = self.backend_.model_sha256
        saved = config.get("model_sha256")
        if saved and self.model_sha256_ and saved != self.model_sha256_:
            raise ArtifactError(
                f"{folder} was saved with generator {self.model!r} of sha256 {saved}, but that "
                f"reference now resolves to {self.model_sha256_}. Install the original model."
            )
        return self
