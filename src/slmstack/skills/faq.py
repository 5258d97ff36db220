"""``FAQAnswerer``: answer from a curated knowledge base, or abstain.

The answerer never writes text: it returns the stored answer of the knowledge-base
entry whose questions are nearest to the query (cosine of mean-pooled encoder
vectors), with a calibrated probability that this entry is the right one (see
:mod:`slmstack.retrieval.calibration`). Below the threshold it abstains with
``"no_match"`` so that a workflow can escalate.

Confidence and threshold are fitted on held-out queries: pass ``calibration=[(query,
entry_id or None), ...]`` to :meth:`FAQAnswerer.fit`, or let it hold out the KB's own
phrasings (leave-one-out: each alternate phrasing is asked against the KB without it,
and each entry's question against the KB without that entry, as an out-of-scope query).
On fewer than 100 held-out queries (a KB of a dozen entries) the threshold is at least
``c / (1 + c)`` with ``c = wrong_answer_cost`` (0.5 by default), where answering a
calibrated confidence costs less than abstaining; ``metrics_["threshold_rule"]`` says
which rule chose the threshold.

Entries can be added, replaced or removed at any time without retraining: only their
questions are embedded. Optional contrastive fine-tuning on paraphrase pairs adapts the
encoder to the domain's wording.

A saved answerer holds ``kb.jsonl`` (one entry per line), ``index.safetensors`` and
``index.json`` (the question vectors, their entry ids and texts), and ``encoder/`` only
when the encoder was fine-tuned; a pretrained encoder is referenced by its alias and
sha256, not copied. An exported answerer (``slmstack export``, :mod:`slmstack.export.faq`)
is the same skill with ``encoder.onnx`` and ``tokenizer.json`` instead: it loads, answers
and takes KB updates with onnxruntime and ``tokenizers`` only, without torch.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

import numpy as np
from numpy.typing import NDArray

from slmstack.artifacts import data_hash, read_jsonl
from slmstack.data.validation import drop_duplicates
from slmstack.errors import ArtifactError, ConfigError, DataWarning
from slmstack.models.resolve import ModelSource, resolve
from slmstack.retrieval.base import Encoded, TextEncoder
from slmstack.retrieval.calibration import MatchCalibrator
from slmstack.retrieval.index import VectorIndex
from slmstack.retrieval.knowledge import KBEntry, read_kb, validate_kb
from slmstack.retrieval.onnx_encoder import OnnxSentenceEncoder
from slmstack.skills._faq_calibration import Calibration, calibrate
from slmstack.skills._faq_kb import KBUpdates
from slmstack.skills.base import Skill, Tensors
from slmstack.skills.params import Check, Interval, optional
from slmstack.types import LabelScore, Prediction, Usage

if TYPE_CHECKING:
    from slmstack.retrieval.encoder import SentenceEncoder


def _kb_rows(entries: Sequence[KBEntry]) -> list[tuple[str, ...]]:
    """The KB content as rows for :func:`data_hash` (the ``source`` of an entry is left out)."""
    return [(e.id, e.question, e.answer, *e.alternates) for e in entries]


class FAQAnswerer(KBUpdates, Skill):
    """Nearest-question answering over a knowledge base, with calibrated abstention.

    Example:
        >>> from slmstack import FAQAnswerer, KBEntry
        >>> kb = [KBEntry("reset", "How do I reset my password?", "Use 'Forgot password'.",
        ...               ("I forgot my password", "password reset"))]
        >>> faq = FAQAnswerer().fit(kb, calibration=[...])  # doctest: +SKIP
        >>> faq.predict(["cannot remember my password"])[0].text  # doctest: +SKIP
        "Use 'Forgot password'."
    """

    skill_name = "slmstack.FAQAnswerer.v1"
    produces = frozenset({"text", "label", "data"})
    state_version = 2  # 2: small held-out sets floor the threshold (cached ones retrain)
    constraints: ClassVar[Mapping[str, Check]] = {
        **dict.fromkeys(("epochs", "batch_size", "top_k", "max_calibration"),
                        Interval(int, 1, None)),
        "threshold": optional(Interval(float, 0, 1)),
        "max_wrong_abstain": optional(Interval(float, 0, 1)),
        "wrong_answer_cost": Interval(float, 0, None, closed="neither"),
        "learning_rate": Interval(float, 0, None, closed="neither"),
        "max_length": Interval(int, 8, None),
        "train_batch_size": Interval(int, 2, None, note="(in-batch negatives need a pair)"),
        "val_fraction": Interval(float, 0, 1, closed="neither"),
    }  # fmt: skip

    def __init__(
        self,
        *,
        base: str = "minilm",  # sentence encoder: alias, local folder or hub id
        threshold: float | None = None,  # None: chosen on held-out queries (see the docstring)
        wrong_answer_cost: float = 1.0,  # >1 prefers escalating over answering wrongly
        max_wrong_abstain: float | None = None,  # cap on right answers withheld (held-out)
        max_length: int = 128,  # questions are short; longer ones are reported
        batch_size: int = 64,
        precision: Literal["auto", "fp32", "bf16"] = "fp32",
        epochs: int = 1,  # contrastive fine-tuning epochs (only when pairs are given)
        learning_rate: float = 2e-5,  # low, so fine-tuning refines rather than erases
        train_batch_size: int = 32,  # more in-batch negatives help, memory permitting
        val_fraction: float = 0.1,  # pairs held out to keep the best fine-tuning epoch
        max_calibration: int = 2000,  # leave-one-out queries sampled from a large KB
        top_k: int = 3,  # entries listed in each prediction's scores
        seed: int = 0,
        allow_pickle: bool = False,
    ):
        self.base = base
        self.threshold = threshold
        self.wrong_answer_cost = wrong_answer_cost
        self.max_wrong_abstain = max_wrong_abstain
        self.max_length = max_length
        self.batch_size = batch_size
        self.precision = precision
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.train_batch_size = train_batch_size
        self.val_fraction = val_fraction
        self.max_calibration = max_calibration
        self.top_k = top_k
        self.seed = seed
        self.allow_pickle = allow_pickle

    @classmethod
    def read_training_data(
        cls,
        path: Path,
        *,
        id_column: str = "id",
        question_column: str = "question",
        answer_column: str = "answer",
        alternates_column: str = "alternates",
    ) -> list[KBEntry]:
        """A knowledge base from CSV, TSV, JSONL or Markdown (see :func:`read_kb`)."""
        return read_kb(
            path,
            id_column=id_column,
            question_column=question_column,
            answer_column=answer_column,
            alternates_column=alternates_column,
        )

    def evaluate(self, data: Path, **options: Any) -> dict[str, Any]:
        """Top-1 accuracy, wrong answers, abstain precision/recall, ECE and speed."""
        from slmstack.evaluation.retrieval import evaluate_faq

        return evaluate_faq(self, data, **options)

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        kb: Sequence[KBEntry],
        *,
        pairs: Sequence[tuple[str, str]] = (),
        calibration: Calibration | None = None,
    ) -> Self:
        """Index ``kb``; fine-tune on ``pairs`` first if given; calibrate on held-out queries.

        Args:
            kb: the entries (see :func:`slmstack.retrieval.read_kb`).
            pairs: ``(query, paraphrase)`` pairs for contrastive fine-tuning of the encoder.
            calibration: held-out ``(query, entry id or None)``; ``None`` means out of
                scope. When omitted, the KB's own phrasings are held out one at a time.
        """
        self._check_params()
        if isinstance(kb, str | Path):
            raise ConfigError("fit() takes KBEntry objects; read a file with read_kb(path)")
        start = time.perf_counter()
        kept, dropped = drop_duplicates(kb)
        entries = validate_kb(kept)
        encoder = self._encoder(resolve(self.base, allow_pickle=self.allow_pickle))
        self.encoder_: TextEncoder = encoder
        self.export_: dict[str, Any] | None = None  # fitting always gives the torch skill
        self.history_: list[dict[str, float]] = []
        self.finetuned_ = bool(pairs)
        if pairs:
            from slmstack.retrieval.contrastive import PairTraining, finetune_on_pairs

            cfg = PairTraining(
                epochs=self.epochs,
                learning_rate=self.learning_rate,
                batch_size=self.train_batch_size,
                val_fraction=self.val_fraction,
                seed=self.seed,
            )
            self.history_ = finetune_on_pairs(encoder, pairs, cfg).history
        self.n_pairs_ = len(pairs)
        self.entries_: dict[str, KBEntry] = {}
        self.index_ = VectorIndex(self.encoder_.dim)
        self._index_entries(entries)
        fitted = calibrate(
            self.index_, self.encoder_, calibration, entry_ids=self.entries_,
            threshold=self.threshold, wrong_answer_cost=self.wrong_answer_cost,
            max_wrong_abstain=self.max_wrong_abstain, max_calibration=self.max_calibration,
            seed=self.seed,
        )  # fmt: skip
        self.calibrator_: MatchCalibrator = fitted.calibrator
        self.threshold_ = fitted.threshold
        self.metrics_: dict[str, Any] = fitted.metrics
        self.provenance_ = self._provenance(
            base=encoder.source.describe(), data_sha256=data_hash(_kb_rows(entries)),
            rows=len(entries), duplicates_dropped=dropped,
            seconds=time.perf_counter() - start, metrics=self.metrics_,
        )  # fmt: skip
        return self

    def _encoder(self, source: ModelSource) -> SentenceEncoder:
        from slmstack.retrieval.encoder import SentenceEncoder  # the torch runtime

        return SentenceEncoder(source, max_length=self.max_length, batch_size=self.batch_size,
                               precision=self.precision, shared=True)  # fmt: skip

    def exported(self, encoder: OnnxSentenceEncoder, export: Mapping[str, Any]) -> Self:
        """A copy encoding with ``encoder`` (:mod:`slmstack.export.faq`), its KB embedded again."""
        self._require_fitted()
        other = type(self)(**self.get_params())
        other.encoder_, other.export_ = encoder, dict(export)
        other.entries_, other.index_ = {}, VectorIndex(encoder.dim)
        other._index_entries(list(self.entries_.values()))
        # Calibration and threshold are kept: the exporter's accuracy gate checks they hold.
        other.calibrator_, other.threshold_ = self.calibrator_, self.threshold_
        other.provenance_ = self.provenance_
        other.metrics_, other.history_ = dict(self.metrics_), list(self.history_)
        other.finetuned_, other.n_pairs_ = self.finetuned_, self.n_pairs_
        return other

    def _index_entries(self, entries: Sequence[KBEntry]) -> None:
        keys, texts, vectors = self._encode_entries(entries)
        self.index_.add(keys, texts, vectors)
        self.entries_.update((e.id, e) for e in entries)

    def _encode_entries(
        self, entries: Sequence[KBEntry]
    ) -> tuple[list[str], list[str], NDArray[np.float32]]:
        """(entry id, question, vector) of every question of ``entries``, as three lists."""
        keys = [e.id for e in entries for _ in e.questions]
        texts = [q for e in entries for q in e.questions]
        encoded = self.encoder_.encode(texts, desc="embed questions" if len(texts) > 256 else None)
        n_cut = sum(1 for i in range(len(texts)) if encoded.tokens.truncation_warning(i))
        if n_cut:
            warnings.warn(
                f"{n_cut} KB questions are longer than the {self.encoder_.window}-token window "
                "and were truncated; raise max_length if their end matters.",
                DataWarning,
                stacklevel=4,
            )
        return keys, texts, encoded.vectors

    # ------------------------------------------------------------------ predicting
    def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        """The best KB answer per text with its calibrated confidence, or an abstention."""
        start = time.perf_counter()
        encoded = self.encoder_.encode(texts)
        index = self.index_  # then the entries: see _faq_kb on updates during predictions
        scores = index.key_scores(encoded.vectors)
        entries = self.entries_
        per_item_ms = (time.perf_counter() - start) * 1000 / len(texts)
        return [
            self._prediction(index, entries, encoded, scores, i, per_item_ms)
            for i in range(len(texts))
        ]

    def _prediction(
        self,
        index: VectorIndex,
        entries: Mapping[str, KBEntry],
        encoded: Encoded,
        scores: NDArray[np.float32],
        i: int,
        ms: float,
    ) -> Prediction:
        keys = index.keys
        row = scores[i]
        ranked = np.argsort(-row, kind="stable")
        top = ranked[: self.top_k]
        # The best entry's margin is over the runner-up whatever top_k lists, as calibrated.
        runner_up = row[ranked[1]] if len(ranked) > 1 else 0.0
        best_other = np.where(np.arange(len(top)) == 0, runner_up, row[top[0]])
        conf = self.calibrator_(row[top], (row[top] - best_other).astype(np.float32))
        entry = entries[keys[int(top[0])]]
        hit = index.search(encoded.vectors[i : i + 1], 1)[0][0]
        match = {
            "entry": entry.to_dict(),
            "matched_question": hit.text,
            "similarity": float(row[top[0]]),
            "threshold": self.threshold_,
        }
        warning = encoded.tokens.truncation_warning(i)
        common: dict[str, Any] = {
            "confidence": float(conf[0]),
            "scores": tuple(
                LabelScore(keys[int(j)], float(c)) for j, c in zip(top, conf, strict=True)
            ),
            "usage": Usage(input_tokens=len(encoded.tokens.input_ids[i]), latency_ms=ms),
            "warnings": (warning,) if warning else (),
        }
        if conf[0] < self.threshold_:
            return Prediction(abstained="no_match", data={"nearest": match}, **common)
        return Prediction(label=entry.id, text=entry.answer, data=match, **common)

    # ------------------------------------------------------------------ persistence
    def _kb_summary(self) -> dict[str, Any]:
        entries = list(self.entries_.values())
        return {"sha256": data_hash(_kb_rows(entries)), "entries": len(entries),
                "questions": len(self.index_)}  # fmt: skip

    def _state(self) -> tuple[dict[str, Any], Tensors]:
        config = {
            "finetuned": self.finetuned_,
            "calibrator": self.calibrator_.to_dict(),
            "threshold": self.threshold_,
            "history": self.history_,
            "n_pairs": self.n_pairs_,
            "kb": self._kb_summary(),
        }
        if isinstance(self.encoder_, OnnxSentenceEncoder):
            config.update(export=self.export_ or {}, onnx_encoder=self.encoder_.settings())
        return config, {}

    def _write_extra(self, folder: Path) -> None:
        with (folder / "kb.jsonl").open("w", encoding="utf-8") as fh:
            for e in self.entries_.values():
                fh.write(json.dumps(e.to_dict(), ensure_ascii=False) + "\n")
        self.index_.save(folder)
        if isinstance(self.encoder_, OnnxSentenceEncoder):  # exported: encoder.onnx
            self.encoder_.save(folder)
        elif self.finetuned_:  # the skill carries its own encoder
            self.encoder_.save(folder / "encoder")  # type: ignore[attr-defined]

    def _restore(self, config: Mapping[str, Any], tensors: Tensors, folder: Path) -> None:
        base = self.provenance_.base
        self.finetuned_ = bool(config["finetuned"])
        self.export_ = config.get("export")  # absent: a torch skill
        if self.export_ is not None:
            self.encoder_ = OnnxSentenceEncoder.from_folder(
                folder, config["onnx_encoder"], batch_size=self.batch_size
            )
        else:
            source = (
                resolve(str(folder / "encoder")).with_provenance(base) if self.finetuned_ else
                resolve(self.base, allow_pickle=self.allow_pickle, expect_sha256=base.get("sha256"))
            )  # fmt: skip
            self.encoder_ = self._encoder(source)
        self.index_ = VectorIndex.load(folder, dim=self.encoder_.dim)
        entries = read_jsonl(folder / "kb.jsonl", KBEntry.from_dict)
        self.entries_ = {e.id: e for e in entries}
        if set(self.entries_) != set(self.index_.keys):
            raise ArtifactError(f"{folder}: kb.jsonl and the index hold different entry ids")
        self.calibrator_ = MatchCalibrator.from_dict(config["calibrator"])
        self.threshold_ = float(config["threshold"])
        self.metrics_ = dict(self.provenance_.metrics)
        self.history_ = list(config["history"])
        self.n_pairs_ = int(config["n_pairs"])

    def _card(self) -> dict[str, Any]:
        return {
            "Knowledge base": self._kb_summary(),
            "Encoder": {"fine-tuned on paraphrase pairs": self.n_pairs_,
                        "saved in the folder": self.finetuned_ or self.export_ is not None,
                        "runtime": "torch" if self.export_ is None else
                        f"onnxruntime {self.export_.get('precision', '?')} (no torch)"},
            **({} if self.export_ is None else {"Export": self.export_}),
            "How it answers": "Returns the stored answer of the nearest entry, never generated "
            "text; abstains with 'no_match' when the calibrated confidence is below the "
            f"threshold ({self.threshold_:.4f}"
            + (f", {rule}" if (rule := self.metrics_.get("threshold_rule")) else "") + ").",
        }  # fmt: skip
