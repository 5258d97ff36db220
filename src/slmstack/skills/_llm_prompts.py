"""What the LLM skills share: the backend, the prompt, the answers and their confidence.

Method. An LLM skill sends chat messages (system prompt, demonstrations as earlier turns,
the text) with a JSON schema, so a backend that constrains its output (llama.cpp's
grammar, the transformers JSON decoder, an API's ``json_schema`` response format) can only
answer inside the label set or the record's shape. Demonstrations are the ``k`` training
examples most similar to the text (sentence-encoder cosine, or TF-IDF when torch is not
wanted); retrieved examples beat a fixed set because the nearest neighbours carry the
distinctions that matter for this text (see :mod:`._llm_shots`).

Confidence comes from one of two sources, and each prediction says which:

* ``"logprobs"``: one greedy call; the confidence is the probability the model gave the
  tokens that spell the answer (``exp`` of their summed log-probabilities). It costs
  nothing extra, but needs a backend that returns log-probabilities;
* ``"self_consistency"`` (after Wang et al. 2022): the greedy answer plus
  ``n_samples - 1`` answers sampled at a temperature above zero, each with its own seed;
  the answer is the majority vote and the confidence its share of the votes. The greedy
  answer votes first and wins ties, so sampling noise (which makes a small model invent
  values) can overturn it only by a majority. It works on any backend and costs
  ``n_samples`` calls per text.

``"auto"`` asks for log-probabilities with the greedy call and samples only when the
backend answered without them; after that it stops asking.

``"greedy"`` is one greedy call without log-probabilities and *no* confidence estimate: a
valid answer reports confidence 1.0 (one vote of one), so a cascade never escalates from
it. It is for a last tier, or for measuring accuracy and latency on a server where
log-probabilities are slow (llama-cpp-python computes them over the whole vocabulary in
Python: about half of each call's time for Qwen2.5's 152k tokens).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np

from slmstack.backends.base import (
    Backend,
    ChatMessage,
    Completion,
    CompletionRequest,
    answered_by,
    total_usage,
)
from slmstack.errors import ArtifactError, BackendError, ConfigError
from slmstack.types import Usage

ConfidenceMethod = Literal["auto", "logprobs", "self_consistency", "greedy"]
H = TypeVar("H", bound=Hashable)


# ---------------------------------------------------------------------- the backend
def make_backend(model: str | Backend, runtime: str, options: Mapping[str, Any] | None) -> Backend:
    """The backend named by the skill's parameters (an object is used as given)."""
    if isinstance(model, Backend):
        return model
    from slmstack.backends.factory import load_backend

    return load_backend(model, runtime=runtime, **dict(options or {}))


def backend_record(model: str | Backend, runtime: str, backend: Backend) -> dict[str, Any]:
    """The generator a skill runs on, for provenance and the drift check on load."""
    from slmstack.models.catalog import known_models

    sha = backend.model_sha256
    if isinstance(model, Backend):
        name, runtime = getattr(model, "name", type(model).__name__), "object"
    else:
        name = model
    known = known_models().get(name)
    # 'ref' only with a hash: a saved base reference must be verifiable on load.
    return {"ref" if isinstance(sha, str) else "model": name, "runtime": runtime,
            "sha256": sha, "licence": known.licence if known else "unknown"}  # fmt: skip


def check_same_backend(saved: Mapping[str, Any], backend: Backend, model: Any, folder: Any) -> None:
    """Refuse a saved skill whose local generator file changed since it was saved."""
    sha = saved.get("sha256")
    if sha is not None and sha != backend.model_sha256:
        raise ArtifactError(
            f"{folder} was saved with generator {model!r} of sha256 {sha}, but that reference "
            f"now resolves to {backend.model_sha256}. Install the original model."
        )


def refuse_object_save(model: Any, skill: str) -> None:
    """A skill built on a Backend object cannot be saved: there is nothing to reload."""
    if isinstance(model, Backend):
        raise ConfigError(
            f"this {skill} runs on a {type(model).__name__} object, which cannot be saved. "
            "Build it with model='smollm2' (and runtime, backend_options) to save it."
        )


def json_object_check(value: Any) -> str | None:
    """A parameter check: ``None`` or a JSON-serialisable mapping."""
    if value is None:
        return None
    try:
        ok = isinstance(value, Mapping) and bool(json.dumps(dict(value)))
    except (TypeError, ValueError):
        ok = False
    return None if ok else "None or a JSON-serialisable dict"


def max_tokens_check(value: Any) -> str | None:
    """A parameter check: ``None`` (the skill's own bound) or an int >= 1."""
    ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)
    return None if ok else "None or an int >= 1"


def model_check(value: Any) -> str | None:
    """A parameter check: a model name or a Backend object."""
    ok = isinstance(value, Backend) or (isinstance(value, str) and bool(value.strip()))
    return None if ok else "a model name such as 'smollm2', or a Backend object"


# ---------------------------------------------------------------------- answers
def value_spans(text: str) -> dict[str, tuple[int, int]]:
    """Character span of each top-level value of the JSON object in ``text``.

    Raises:
        ValueError: ``text`` is not one JSON object (``json.JSONDecodeError`` included).
    """
    decoder = json.JSONDecoder()
    spans: dict[str, tuple[int, int]] = {}

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    i = skip(0)
    if not text.startswith("{", i):
        raise ValueError("not a JSON object")
    i = skip(i + 1)
    while i < len(text) and text[i] != "}":
        key, i = decoder.raw_decode(text, i)
        i = skip(i)
        if not text.startswith(":", i):
            raise ValueError(f"expected ':' at {i}")
        start = skip(i + 1)
        _, end = decoder.raw_decode(text, start)
        spans[str(key)] = (start, end)
        i = skip(end)
        if text.startswith(",", i):
            i = skip(i + 1)
    return spans


def span_probability(completion: Completion, start: int, end: int) -> float | None:
    """``exp`` of the summed log-probabilities of the tokens that overlap ``[start, end)``.

    ``None`` when the backend gave no log-probabilities, or tokens that do not spell
    the text (a byte-level token cut inside a character), so they cannot be aligned.
    """
    tokens = completion.logprobs
    if not tokens or "".join(t.token for t in tokens) != completion.text:
        return None
    total, pos = 0.0, 0
    for t in tokens:
        if pos < end and pos + len(t.token) > start:
            total += t.logprob
        pos += len(t.token)
    return math.exp(total)


def value_probability(completion: Completion, key: str) -> float:
    """The probability the model gave the tokens of ``key``'s value in its JSON answer.

    A string value is scored without its opening quote (the grammar forces it) but with
    its closing one, which decides where the value ends (``card`` or ``card_lost``). An
    answer without the key gave it no probability: 0.0.
    """
    spans = value_spans(completion.text)
    if key not in spans:
        return 0.0
    start, end = spans[key]
    if completion.text.startswith('"', start):
        start += 1
    p = span_probability(completion, start, end)
    if p is None:
        raise BackendError(
            f"{completion.model} returned log-probabilities whose tokens do not spell its "
            "answer, so the answer's probability cannot be read. Use "
            "confidence_method='self_consistency'."
        )
    return p


def vote(values: Sequence[H]) -> tuple[H, Counter[H]]:
    """The most frequent value (ties: the first seen) and the count of every value."""
    counts = Counter(values)
    return counts.most_common(1)[0][0], counts


@dataclass(frozen=True)
class Answers:
    """The completions for one text and how its confidence is to be read from them."""

    method: Literal["logprobs", "self_consistency", "greedy"]
    completions: list[Completion]  # the greedy answer first

    def usage(self, latency_ms: float) -> Usage:
        """Tokens of every call (split by the model that answered), and the wall time."""
        return total_usage(self.completions, latency_ms)

    @property
    def model(self) -> str:
        """The model that answered (after a failover, not the configured one); several: ", "."""
        return answered_by(self.completions)


class LLMCaller:
    """Sends one text's messages and gets the completions its confidence method needs."""

    def __init__(
        self,
        backend: Backend,
        *,
        method: ConfidenceMethod,
        n_samples: int,
        temperature: float,
        seed: int,
        max_tokens: int,
    ):
        self.backend = backend
        self.method = method
        self.n_samples = n_samples
        self.temperature = temperature
        self.seed = seed
        self.max_tokens = max_tokens
        # Set once the backend answered without log-probabilities ("auto" stops asking).
        self.no_logprobs = False

    def ask(self, messages: list[ChatMessage], schema: Mapping[str, Any]) -> Answers:
        """The greedy answer, with log-probabilities or followed by samples; see the module."""
        if self.method == "greedy":
            return Answers("greedy", [self.backend.complete(
                self._request(messages, schema, 0.0, self.seed, False))])  # fmt: skip
        want = self.method == "logprobs" or (self.method == "auto" and not self.no_logprobs)
        first = self.backend.complete(self._request(messages, schema, 0.0, self.seed, want))
        if want and first.logprobs:
            return Answers("logprobs", [first])
        if self.method == "logprobs":
            raise BackendError(
                f"{self.backend.name} returned no log-probabilities, so "
                "confidence_method='logprobs' cannot be used. Choose 'self_consistency' "
                "(or 'auto'), or a backend that returns them."
            )
        if want and self.method == "auto" and self.n_samples > 1:
            warnings.warn(
                f"{self.backend.name} returned no log-probabilities, so confidence_method="
                f"'auto' samples {self.n_samples} answers per text from now on ({self.n_samples}"
                "x the calls and tokens); set confidence_method='greedy' for one call per "
                "text (confidence then 1.0), or use a backend that returns log-probabilities",
                stacklevel=2,
            )
        self.no_logprobs = self.no_logprobs or want
        samples = [
            self.backend.complete(
                self._request(messages, schema, self.temperature, self.seed + i, False)
            )
            for i in range(1, self.n_samples)
        ]
        return Answers("self_consistency", [first, *samples])

    def _request(
        self,
        messages: list[ChatMessage],
        schema: Mapping[str, Any],
        temperature: float,
        seed: int,
        logprobs: bool,
    ) -> CompletionRequest:
        # logprobs=0: the generated tokens' own log-probabilities, no alternatives.
        return CompletionRequest(messages, max_tokens=self.max_tokens, temperature=temperature,
                                 json_schema=schema, seed=seed,
                                 logprobs=0 if logprobs else None)  # fmt: skip


class PredictOnce:
    """A skill whose ``predict`` answers each distinct text once, for evaluation.

    The evaluation functions predict the test texts again to time them; for an LLM that
    would pay for every text two or three times. Wrapped in this, the repeats are free,
    and :meth:`finish` replaces their timings by each prediction's own measured latency
    and adds the tokens spent. Other attributes (``classes_``, ``specs_``) are the skill's.
    """

    def __init__(self, skill: Any):
        self.skill = skill
        self.seen: dict[str, Any] = {}
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.skill, name)

    def predict(self, texts: Sequence[str]) -> list[Any]:
        """The skill's predictions, each text predicted on its first request only."""
        todo = [t for t in dict.fromkeys(texts) if t not in self.seen]
        if todo:
            start = time.perf_counter()
            self.seen.update(zip(todo, self.skill.predict(todo), strict=True))
            self.seconds += time.perf_counter() - start
        return [self.seen[t] for t in texts]

    def finish(self, report: dict[str, Any]) -> dict[str, Any]:
        """``report`` with speed from the first predictions and the tokens they used."""
        from slmstack.evaluation.speed import peak_rss_mb

        usages = [p.usage for p in self.seen.values()]
        latency = [u.latency_ms for u in usages] or [0.0]
        report["speed"] = {
            "latency_p50_ms": float(np.percentile(latency, 50)),
            "latency_p95_ms": float(np.percentile(latency, 95)),
            "throughput_per_s": len(usages) / self.seconds if self.seconds else 0.0,
            "batch_size": float(len(usages)),
            "peak_rss_mb": peak_rss_mb(),
        }
        report["usage"] = {"texts": len(usages),
                           "input_tokens": sum(u.input_tokens for u in usages),
                           "output_tokens": sum(u.output_tokens for u in usages)}  # fmt: skip
        return report


def per_item_ms(start: float, n: int) -> float:
    """A batch step's wall time shared equally among its ``n`` items, in ms."""
    return (time.perf_counter() - start) * 1000 / max(1, n)


def chat(system: str, shots: Sequence[tuple[str, str]], text: str, ask: str) -> list[ChatMessage]:
    """System prompt, then each demonstration as a user turn and its answer, then ``text``."""
    messages = [ChatMessage("system", system)]
    for shot_text, answer in shots:
        messages += [ChatMessage("user", ask + shot_text), ChatMessage("assistant", answer)]
    messages.append(ChatMessage("user", ask + text))
    return messages
