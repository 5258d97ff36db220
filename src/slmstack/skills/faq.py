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

Entries can be added, replaced or removed at any time without retraining: only their
questions are embedded. Optional contrastive fine-tuning on paraphrase pairs adapts the
encoder to the domain's wording.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
from numpy.typing import NDArray

from slmstack import registry
from slmstack.errors import ArtifactError, ConfigError, DataError, DataWarning, NotFittedError
from slmstack.retrieval.calibration import (
    MatchCalibrator,
    choose_threshold,
    fit_match_calibrator,
    leave_one_out_set,
    top_two,
)
from slmstack.retrieval.contrastive import PairTraining, finetune_on_pairs
from slmstack.retrieval.encoder import Encoded, SentenceEncoder
from slmstack.retrieval.index import VectorIndex
from slmstack.retrieval.knowledge import KBEntry, validate_kb
from slmstack.skills.base import Skill, check_texts
from slmstack.skills.faq_io import load_faq, save_faq
from slmstack.training.calibration import expected_calibration_error
from slmstack.types import LabelScore, Prediction, Usage

_NAME = "slmstack.FAQAnswerer.v1"
Calibration = Sequence[tuple[str, str | None]]


@registry.skills.register(_NAME)
class FAQAnswerer(Skill):
    """Nearest-question answering over a knowledge base, with calibrated abstention.

    Example:
        >>> from slmstack import FAQAnswerer, KBEntry
        >>> kb = [KBEntry("reset", "How do I reset my password?", "Use 'Forgot password'.",
        ...               ("I forgot my password", "password reset"))]
        >>> faq = FAQAnswerer().fit(kb, calibration=[...])  # doctest: +SKIP
        >>> faq.predict(["cannot remember my password"])[0].text  # doctest: +SKIP
        "Use 'Forgot password'."
    """

    skill_name = _NAME

    def __init__(
        self,
        *,
        base: str = "minilm",
        threshold: float | None = None,  # None: chosen on held-out queries during fit
        wrong_answer_cost: float = 1.0,  # >1 prefers escalating over answering wrongly
        max_wrong_abstain: float | None = None,  # cap on right answers withheld (held-out)
        max_length: int = 128,  # questions are short; longer ones are reported
        batch_size: int = 64,
        precision: Literal["fp32", "bf16"] = "fp32",
        epochs: int = 1,  # contrastive fine-tuning epochs (only when pairs are given)
        learning_rate: float = 2e-5,
        train_batch_size: int = 32,  # more in-batch negatives help, memory permitting
        val_fraction: float = 0.1,
        max_calibration: int = 2000,  # leave-one-out queries sampled from a large KB
        top_k: int = 3,
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

    _PARAMS = (
        "base", "threshold", "wrong_answer_cost", "max_wrong_abstain", "max_length",
        "batch_size", "precision", "epochs", "learning_rate", "train_batch_size",
        "val_fraction", "max_calibration", "top_k", "seed", "allow_pickle",
    )  # fmt: skip

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as passed to ``__init__``."""
        return {k: getattr(self, k) for k in self._PARAMS}

    def _check_params(self) -> None:
        def bad(name: str, allowed: str) -> ConfigError:
            return ConfigError(
                f"The {name!r} parameter of FAQAnswerer must be {allowed}. "
                f"Got {getattr(self, name)!r} instead."
            )

        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise bad("threshold", "None or a float in [0, 1]")
        if not self.wrong_answer_cost > 0:
            raise bad("wrong_answer_cost", "a float in (0, inf)")
        if self.max_wrong_abstain is not None and not 0.0 <= self.max_wrong_abstain <= 1.0:
            raise bad("max_wrong_abstain", "None or a float in [0, 1]")
        if self.precision not in ("fp32", "bf16"):
            raise bad("precision", "'fp32' or 'bf16'")
        for name in ("epochs", "batch_size", "top_k", "max_calibration"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise bad(name, "an int >= 1")
        if not isinstance(self.train_batch_size, int) or self.train_batch_size < 2:
            raise bad("train_batch_size", "an int >= 2")
        if not 0.0 < self.val_fraction < 1.0:
            raise bad("val_fraction", "a float in (0, 1)")
        if not self.learning_rate > 0:
            raise bad("learning_rate", "a float in (0, inf)")

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
        entries = validate_kb(kb)
        start = time.perf_counter()
        self.encoder_ = SentenceEncoder.from_ref(
            self.base,
            allow_pickle=self.allow_pickle,
            max_length=self.max_length,
            batch_size=self.batch_size,
            precision=self.precision,
        )
        self.history_: list[dict[str, float]] = []
        self.finetuned_ = bool(pairs)
        if pairs:
            cfg = PairTraining(
                epochs=self.epochs,
                learning_rate=self.learning_rate,
                batch_size=self.train_batch_size,
                val_fraction=self.val_fraction,
                seed=self.seed,
            )
            self.history_ = finetune_on_pairs(self.encoder_, pairs, cfg).history
        self.entries_: dict[str, KBEntry] = {}
        self.index_ = VectorIndex(self.encoder_.dim)
        self._index_entries(entries)
        self._calibrate(calibration)
        self.train_seconds_ = time.perf_counter() - start
        self.n_pairs_ = len(pairs)
        return self

    def _index_entries(self, entries: Sequence[KBEntry]) -> None:
        keys = [e.id for e in entries for _ in e.questions]
        texts = [q for e in entries for q in e.questions]
        encoded = self.encoder_.encode(texts, desc="embed questions" if len(texts) > 256 else None)
        self.index_.add(keys, texts, encoded.vectors)
        self.entries_.update((e.id, e) for e in entries)
        n_cut = sum(1 for i in range(len(texts)) if encoded.tokens.truncation_warning(i))
        if n_cut:
            warnings.warn(
                f"{n_cut} KB questions are longer than the {self.encoder_.window}-token window "
                "and were truncated; raise max_length if their end matters.",
                DataWarning,
                stacklevel=3,
            )

    def _calibrate(self, calibration: Calibration | None) -> None:
        if calibration is not None:
            sim, margin, correct, source = self._held_out_features(calibration)
        else:
            sim, margin, correct = leave_one_out_set(self.index_, self.max_calibration, self.seed)
            source = "leave-one-out over the KB's phrasings"
        self.calibrator_ = fit_match_calibrator(sim, margin, correct)
        conf = self.calibrator_(sim, margin)
        choice = choose_threshold(
            conf,
            correct,
            wrong_answer_cost=self.wrong_answer_cost,
            max_wrong_abstain=self.max_wrong_abstain,
        )
        self.threshold_ = self.threshold if self.threshold is not None else choice.threshold
        answered = conf >= self.threshold_
        probs = np.stack([1 - conf, conf], axis=1)
        self.metrics_: dict[str, Any] = {
            "calibration_source": source,
            "calibration_queries": len(correct),
            "calibration_right": int(correct.sum()),
            "threshold": self.threshold_,
            "threshold_chosen_on_held_out": self.threshold is None,
            "held_out_answered_accuracy": float(correct[answered].mean())
            if answered.any()
            else 0.0,
            "held_out_abstain_rate": float(1 - answered.mean()),
            "held_out_ece": expected_calibration_error(probs, correct.astype(np.int64)),
        }

    def _held_out_features(
        self, calibration: Calibration
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.bool_], str]:
        queries, expected = [], []
        for i, item in enumerate(calibration):
            if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str)):
                raise DataError(
                    f"calibration item #{i} must be (query, entry id or None), got {item!r}"
                )
            query, target = item
            if target is not None and target not in self.entries_:
                raise DataError(
                    f"calibration item #{i} ({query!r}) expects entry {target!r}, which is not "
                    "in the knowledge base; use an existing id, or None for out-of-scope"
                )
            queries.append(query)
            expected.append(target)
        best, sim, margin = top_two(self.index_.key_scores(self.encoder_.encode(queries).vectors))
        keys = self.index_.keys
        correct = np.array([keys[b] == t for b, t in zip(best, expected, strict=True)])
        return sim, margin, correct, f"{len(queries)} held-out queries"

    # ------------------------------------------------------------------ KB updates
    def add(self, entries: Sequence[KBEntry]) -> Self:
        """Add entries (embedded now; no retraining). Ids must be new."""
        self._require_fitted()
        clash = [e.id for e in entries if e.id in self.entries_]
        if clash:
            raise DataError(f"entries {clash[:5]} already exist; use replace() to change them")
        validate_kb([*self.entries_.values(), *entries])
        self._index_entries(list(entries))
        return self

    def remove(self, ids: Collection[str]) -> Self:
        """Remove entries by id. Unknown ids are an error (typos would pass silently)."""
        self._require_fitted()
        unknown = sorted(set(ids) - set(self.entries_))
        if unknown:
            raise DataError(
                f"no entries with ids {unknown[:5]}; known ids include {list(self.entries_)[:5]}"
            )
        if len(set(ids)) >= len(self.entries_):
            raise DataError("removing every entry would leave an empty knowledge base")
        self.index_.remove(set(ids))
        for i in ids:
            self.entries_.pop(i, None)
        return self

    def replace(self, entries: Sequence[KBEntry]) -> Self:
        """Replace existing entries (same ids) with new questions and answers."""
        self._require_fitted()
        missing = [e.id for e in entries if e.id not in self.entries_]
        if missing:
            raise DataError(f"entries {missing[:5]} do not exist; use add() for new entries")
        ids = {e.id for e in entries}
        validate_kb([*(e for e in self.entries_.values() if e.id not in ids), *entries])
        self.index_.remove(ids)
        self._index_entries(list(entries))
        return self

    @property
    def kb(self) -> list[KBEntry]:
        """The current entries."""
        self._require_fitted()
        return list(self.entries_.values())

    # ------------------------------------------------------------------ predicting
    def _require_fitted(self) -> None:
        if not hasattr(self, "index_"):
            raise NotFittedError(
                "This FAQAnswerer is not fitted yet. Call fit(kb) or FAQAnswerer.load(folder) "
                "first."
            )

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """The best KB answer per text with its calibrated confidence, or an abstention."""
        self._require_fitted()
        check_texts(texts)
        if not texts:
            return []
        start = time.perf_counter()
        encoded = self.encoder_.encode(texts)
        scores = self.index_.key_scores(encoded.vectors)
        per_item_ms = (time.perf_counter() - start) * 1000 / len(texts)
        return [self._prediction(encoded, scores, i, per_item_ms) for i in range(len(texts))]

    def _prediction(
        self, encoded: Encoded, scores: NDArray[np.float32], i: int, ms: float
    ) -> Prediction:
        keys = self.index_.keys
        row = scores[i]
        k = min(self.top_k, len(keys))
        top = np.argsort(-row, kind="stable")[:k]
        best_other = np.where(np.arange(k) == 0, row[top[1]] if k > 1 else 0.0, row[top[0]])
        conf = self.calibrator_(row[top], (row[top] - best_other).astype(np.float32))
        entry = self.entries_[keys[int(top[0])]]
        hit = self.index_.search(encoded.vectors[i : i + 1], 1)[0][0]
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
    def save(self, path: str | Path) -> Path:
        """Write the KB, its vectors (safetensors), calibration and config to ``path``."""
        self._require_fitted()
        return save_faq(self, Path(path), _NAME)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Rebuild an answerer saved with :meth:`save` (files verified by sha256)."""
        folder = Path(path)
        config, encoder, index, entries = load_faq(folder, _NAME)
        self = cls(**config["params"])
        self.encoder_ = encoder
        self.index_ = index
        self.entries_ = {e.id: e for e in entries}
        if set(self.entries_) != set(index.keys):
            raise ArtifactError(f"{folder}: kb.jsonl and the index hold different entry ids")
        self.calibrator_ = MatchCalibrator.from_dict(config["calibrator"])
        self.threshold_ = float(config["threshold"])
        self.metrics_ = dict(config["metrics"])
        self.history_ = list(config["history"])
        self.finetuned_ = bool(config["finetuned"])
        self.train_seconds_ = float(config["train_seconds"])
        self.n_pairs_ = int(config["n_pairs"])
        return self
