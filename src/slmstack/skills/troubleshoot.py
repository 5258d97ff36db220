"""``Troubleshooter``: numbered steps written from manuals and past tickets, with sources.

``fit`` chunks the documents (keeping source and character offsets) and embeds the
chunks. For each problem, ``predict`` retrieves the most similar chunks; when none
reaches ``min_similarity`` it abstains with ``"no_relevant_source"`` *without calling
the generator*. Otherwise the generator is asked for numbered steps using only those
passages. Each step must be supported by the passage it cites (see :mod:`._support`);
unsupported steps are dropped and listed, with their support, in
``Prediction.data["dropped_steps"]``; the kept ones, with theirs, in ``data["steps"]``.
When no step is left, the answer quotes the sentences of the best-ranked manual passage
(a past ticket only when no manual passage was retrieved) with its citation, and
``data["quoted"]`` is true; with ``fallback="abstain"`` it abstains with
``"unsupported_answer"`` instead. Cited source chunks are in ``data["citations"]``.

The generator is any :class:`~slmstack.backends.Backend`, loaded by name through
:func:`slmstack.backends.load_backend` (``generator="smollm2"``, ``runtime="llama_cpp"``)
the first time it is needed, so a saved troubleshooter records only which model to use.
``generator_options`` go to ``load_backend`` unchanged: with ``runtime="openai"`` they name
the server (``base_url``, ``api_key_env``, ``fallbacks``...), from YAML ``params`` or from
``slmstack train slmstack.Troubleshooter.v1 --set generator_options='{base_url: ...}'``.

With ``generator=None`` (CLI ``--generator none``) no generator is loaded: every answer
quotes the steps of the retrieved manual passage that best matches the problem, with its
citation (``data["quoted"]`` true, no tokens spent). On the project's judged set
(``bench/troubleshoot.py``: 30 questions over the support-desk manuals) this extractive
mode recalled 83.3% of the judged steps, against 35.0% for SmolLM2-135M and 39.4% for
Qwen2.5-Coder-0.5B, which reword, merge or drop the manual's steps; a generator earns its
place when the manuals do not hold ready-made steps.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np

from slmstack.artifacts import data_hash, read_jsonl
from slmstack.backends.base import Backend, CompletionRequest, failover_warnings, total_usage
from slmstack.errors import ArtifactError, ConfigError, DataError, DataWarning, NotStreamableError
from slmstack.models.resolve import ModelSource, resolve
from slmstack.retrieval.chunking import Chunk, Document, chunk_documents, read_documents
from slmstack.retrieval.encoder import SentenceEncoder
from slmstack.retrieval.index import Hit, VectorIndex
from slmstack.skills._grounding import (
    Step,
    build_messages,
    manual_passage,
    parse_steps,
    quote_steps,
    says_not_in_sources,
)
from slmstack.skills.base import Skill, Tensors, check_texts
from slmstack.skills.params import Check, Interval, runtime_check
from slmstack.types import Prediction, Usage


def _step_data(step: Step, chunks: Sequence[Chunk]) -> dict[str, Any]:
    """A step as ``Prediction.data`` shows it: text, cited chunk ids, support."""
    sources = [chunks[n - 1].id for n in step.cited]
    return {"text": step.text, "sources": sources, "support": round(step.support, 4)}


def _model_name(value: Any) -> str | None:
    ok = value is None or (isinstance(value, str) and bool(value.strip()))
    return None if ok else "a model name such as 'smollm2', or None for extractive answers"


class Troubleshooter(Skill):
    """Retrieve passages, write grounded numbered steps, cite them; abstain when none fits.

    Example:
        >>> from slmstack import Troubleshooter, read_documents
        >>> docs = read_documents("manuals/")  # doctest: +SKIP
        >>> ts = Troubleshooter(generator="smollm2").fit(docs)  # doctest: +SKIP
        >>> p = ts.predict(["the printer says paper jam"])[0]  # doctest: +SKIP
        >>> print(p.text); p.data["citations"][0]["source"]  # doctest: +SKIP
        1. Open tray 2 and remove the jammed sheet.
        'manuals/printer.md'
    """

    skill_name = "slmstack.Troubleshooter.v1"
    produces = frozenset({"text", "data"})
    constraints: ClassVar[Mapping[str, Check]] = {
        **dict.fromkeys(("top_k", "max_tokens", "batch_size"), Interval(int, 1, None)),
        "generator": _model_name,
        "runtime": runtime_check,
        "min_similarity": Interval(float, -1, 1, note="(a cosine)"),
        "min_support": Interval(float, 0, 1),
        "max_chars": Interval(int, 50, None),
        "max_length": Interval(int, 8, None),
    }

    def __init__(
        self,
        *,
        base: str = "minilm",  # retrieval encoder: alias, local folder or hub id
        generator: str | None = "smollm2",  # alias or GGUF file (first predict); None: extractive
        runtime: str = "llama_cpp",  # llama_cpp, transformers or openai
        generator_options: dict[str, Any] | None = None,  # for load_backend: base_url, ...
        top_k: int = 3,  # passages shown to the generator; small models lose track of more
        min_similarity: float = 0.35,  # cosine below which a passage is not relevant
        min_support: float = 0.5,  # share of a step's words in phrases of its cited passage
        fallback: Literal["quote", "abstain"] = "quote",  # when no step is supported
        max_chars: int = 800,  # chunk size; ~180 tokens, inside MiniLM's 256-token window
        max_tokens: int = 256,  # generated tokens per answer; a cut last step is dropped
        max_length: int = 256,  # encoder window; holds a whole 800-character chunk
        batch_size: int = 64,
        precision: Literal["auto", "fp32", "bf16"] = "fp32",
        allow_pickle: bool = False,
    ):
        self.base = base
        self.generator = generator
        self.runtime = runtime
        self.generator_options = generator_options
        self.top_k = top_k
        self.min_similarity = min_similarity
        self.min_support = min_support
        self.fallback = fallback
        self.max_chars = max_chars
        self.max_tokens = max_tokens
        self.max_length = max_length
        self.batch_size = batch_size
        self.precision = precision
        self.allow_pickle = allow_pickle

    @classmethod
    def read_training_data(
        cls, path: Path, *, text_field: str = "text", title_field: str = "title"
    ) -> list[Document]:
        """Manuals and past tickets: Markdown, text and JSONL files, or a folder of them."""
        return read_documents(path, text_field=text_field, title_field=title_field)

    def evaluate(self, data: Path, **options: Any) -> dict[str, Any]:
        """Retrieval and citation hit rates of the expected source, abstention, tokens."""
        from slmstack.evaluation.retrieval import evaluate_troubleshooter

        return evaluate_troubleshooter(self, data, **options)

    # ------------------------------------------------------------------ fitting
    def fit(self, documents: Sequence[Document]) -> Self:
        """Chunk and embed ``documents`` (see :func:`slmstack.read_documents`)."""
        self._check_params()
        if isinstance(documents, str | Path):
            raise ConfigError("fit() takes Document objects; read files with read_documents()")
        if not documents:
            raise DataError("no documents to build the troubleshooter from")
        for i, d in enumerate(documents):
            if not isinstance(d, Document):
                raise DataError(f"document #{i} is {type(d).__name__}, expected Document")
        start = time.perf_counter()
        chunks = chunk_documents(documents, max_chars=self.max_chars)
        if not chunks:
            raise DataError(f"the {len(documents)} documents hold no text to retrieve from")
        self.encoder_ = self._encoder(resolve(self.base, allow_pickle=self.allow_pickle))
        encoded = self.encoder_.encode(
            [c.embed_text for c in chunks], desc="embed chunks" if len(chunks) > 256 else None
        )
        cut = [c.source for i, c in enumerate(chunks) if encoded.tokens.truncation_warning(i)]
        if cut:  # characters are a poor token budget in some scripts (Chinese, Thai...)
            warnings.warn(
                f"{len(cut)} of {len(chunks)} chunks are longer than the encoder's window and "
                f"are found by their beginning only (first in {cut[0]}); lower max_chars "
                f"(now {self.max_chars}) for these documents",
                DataWarning,
                stacklevel=2,
            )
        self.index_ = VectorIndex(self.encoder_.dim)
        self.index_.add([c.id for c in chunks], [c.text for c in chunks], encoded.vectors)
        self.chunks_: dict[str, Chunk] = {c.id: c for c in chunks}
        self.n_documents_ = len(documents)
        self.provenance_ = self._provenance(
            base=self.encoder_.source.describe(),
            data_sha256=data_hash((d.source, d.text) for d in documents),
            rows=len(documents),
            seconds=time.perf_counter() - start,
        )
        return self

    def _encoder(self, source: ModelSource) -> SentenceEncoder:
        return SentenceEncoder(source, max_length=self.max_length, batch_size=self.batch_size,
                               precision=self.precision, shared=True)  # fmt: skip

    # ------------------------------------------------------------------ predicting
    @property
    def backend(self) -> Backend:
        """The generator, loaded (and shared between skills) on first use.

        Raises:
            AttributeError: the troubleshooter is extractive (``generator=None``) and has
                no generator (so ``getattr(skill, "backend", None)`` is ``None``).
        """
        if self.generator is None:
            raise AttributeError(
                "this Troubleshooter is extractive (generator=None): it quotes the manual "
                "and has no generator; set generator='smollm2' (or another model) for one"
            )
        if getattr(self, "backend_", None) is None:
            from slmstack.backends.factory import load_backend

            self.backend_ = load_backend(
                self.generator, runtime=self.runtime, **(self.generator_options or {})
            )
        return self.backend_

    def retrieve(self, texts: Sequence[str]) -> list[list[Hit]]:
        """The ``top_k`` most similar chunks per text that reach ``min_similarity``."""
        self._require_fitted()
        check_texts(texts)
        if not texts:
            return []
        vectors = self.encoder_.encode(texts).vectors
        hits = self.index_.search(vectors, self.top_k)
        return [[h for h in row if h.score >= self.min_similarity] for row in hits]

    def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Numbered, cited steps per problem, or an abstention with its reason."""
        out = []
        for text, hits in zip(texts, self.retrieve(texts), strict=True):
            out.append(self._answer(text, hits))
        return out

    def stream(self, text: str) -> Iterator[str]:
        """Always raises :class:`NotStreamableError`: a Troubleshooter's answer is checked.

        Each generated step is kept only if its cited passage supports it, and the kept
        steps are renumbered (or replaced by a quote), so no text is final before the
        generation ends. The chat endpoint sends such an answer in one piece.
        """
        raise NotStreamableError(
            "a Troubleshooter cannot stream its answer: each generated step is checked "
            "against its cited passage after generation, and unsupported steps are dropped. "
            "Call predict() (the chat endpoint sends the checked answer in one piece)."
        )

    def _answer(self, query: str, hits: list[Hit]) -> Prediction:
        start = time.perf_counter()
        retrieved = [self._citation(h) for h in hits]
        if not hits:
            return Prediction(
                abstained="no_relevant_source",
                data={"retrieved": [], "min_similarity": self.min_similarity},
                usage=Usage(latency_ms=(time.perf_counter() - start) * 1000),
            )
        chunks = [self.chunks_[h.key] for h in hits]
        confidence = float(np.clip(hits[0].score, 0.0, 1.0))
        if self.generator is None:  # extractive: the manual's own steps, no generator
            n = manual_passage(chunks, query)
            own = quote_steps(chunks[n - 1], n)
            return self._answered(
                own, chunks, {"retrieved": retrieved}, confidence,
                Usage(latency_ms=(time.perf_counter() - start) * 1000), quoted=True,
                warnings=[] if own else [f"the best passage ('{chunks[n - 1].title}' of "
                                            f"{chunks[n - 1].source}) has no step to quote"],
            )  # fmt: skip
        completion = self.backend.complete(
            CompletionRequest(build_messages(query, chunks), max_tokens=self.max_tokens)
        )
        usage = total_usage([completion], (time.perf_counter() - start) * 1000)
        base: dict[str, Any] = {"retrieved": retrieved, "raw_output": completion.text,
                                "model": completion.model}  # fmt: skip
        warnings = failover_warnings([completion])
        truncated = completion.finish_reason == "length"
        if truncated:
            warnings.append(
                f"generation stopped at max_tokens={self.max_tokens}; the last, incomplete "
                "step was dropped"
            )
        steps = parse_steps(completion.text, chunks, truncated=truncated)
        if not steps and says_not_in_sources(completion.text):
            return Prediction(
                abstained="not_in_sources", confidence=confidence, data=base, usage=usage
            )
        kept = [s for s in steps if s.support >= self.min_support]
        dropped = [s for s in steps if s.support < self.min_support]
        base["dropped_steps"] = [_step_data(s, chunks) for s in dropped]
        if dropped:
            warnings.append(
                f"{len(dropped)} of {len(steps)} generated steps were dropped: less than "
                f"{self.min_support:.0%} of their content words are in phrases of the passage "
                "they cite"
            )
        quoted = not kept and self.fallback == "quote"
        if quoted:
            # Nothing the generator wrote is traceable: the manual's own words are.
            n = manual_passage(chunks, query)
            kept = quote_steps(chunks[n - 1], n)
            warnings.append(
                "no generated step was supported by its source; the answer quotes the "
                f"passage '{chunks[n - 1].title}' of {chunks[n - 1].source} instead"
                if kept
                else "no generated step was supported by its source, and the best passage "
                f"('{chunks[n - 1].title}' of {chunks[n - 1].source}) has no step to quote"
            )
        return self._answered(kept, chunks, base, confidence, usage, quoted=quoted,
                              warnings=warnings)  # fmt: skip

    def _answered(
        self, kept: list[Step], chunks: list[Chunk], base: dict[str, Any], confidence: float,
        usage: Usage, *, quoted: bool, warnings: list[str],
    ) -> Prediction:  # fmt: skip
        """The numbered, cited answer of ``kept`` steps, or ``unsupported_answer`` if none."""
        if not kept:
            return Prediction(abstained="unsupported_answer", confidence=confidence, data=base,
                              usage=usage, warnings=tuple(warnings))  # fmt: skip
        cited = sorted({n for s in kept for n in s.cited})
        return Prediction(
            text="\n".join(f"{i}. {s.text}" for i, s in enumerate(kept, 1)),
            confidence=confidence,
            data={**base, "steps": [_step_data(s, chunks) for s in kept], "quoted": quoted,
                  "citations": [base["retrieved"][n - 1] for n in cited]},
            usage=usage,
            warnings=tuple(warnings),
        )  # fmt: skip

    def _citation(self, hit: Hit) -> dict[str, Any]:
        c = self.chunks_[hit.key]
        return {**c.to_dict(), "score": round(hit.score, 6)}

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, Any], Tensors]:
        return {"documents": self.n_documents_, "chunks": len(self.chunks_)}, {}

    def _write_extra(self, folder: Path) -> None:
        with (folder / "chunks.jsonl").open("w", encoding="utf-8") as fh:
            for c in self.chunks_.values():
                fh.write(json.dumps(c.to_dict(), ensure_ascii=False) + "\n")
        self.index_.save(folder)

    def _restore(self, config: Mapping[str, Any], tensors: Tensors, folder: Path) -> None:
        self.encoder_ = self._encoder(
            resolve(self.base, allow_pickle=self.allow_pickle,
                    expect_sha256=self.provenance_.base.get("sha256"))
        )  # fmt: skip
        self.index_ = VectorIndex.load(folder, dim=self.encoder_.dim)
        chunks = read_jsonl(folder / "chunks.jsonl", Chunk.from_dict)
        self.chunks_ = {c.id: c for c in chunks}
        if set(self.chunks_) != set(self.index_.keys):
            raise ArtifactError(f"{folder}: chunks.jsonl and the index hold different chunks")
        self.n_documents_ = int(config["documents"])

    def _card(self) -> dict[str, Any]:
        sources = sorted({c.source for c in self.chunks_.values()})
        return {
            "Generator": (
                {"model": self.generator, "runtime": self.runtime}
                if self.generator is not None
                else {"model": "none (extractive: quotes the manual's steps)"}
            ),
            "Sources": {"documents": self.n_documents_, "chunks": len(self.chunks_),
                        "first sources": ", ".join(sources[:5])},
            "Grounding": {"passages per answer": self.top_k,
                          "abstains below cosine": self.min_similarity,
                          "minimum step support": self.min_support,
                          "no supported step": self.fallback},
        }  # fmt: skip
