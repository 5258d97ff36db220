"""The app a user would write without slmstack: FastAPI + sentence-transformers + scikit-learn.

Loads ``all-MiniLM-L6-v2`` from ``$BASELINE_MODEL`` (the folder slmstack's ``minilm``
resolves to, so both servers run the same weights), fits a ``LogisticRegression`` on the
embeddings of the texts in ``$BASELINE_TRAIN`` (a JSON list of ``[text, label]``) at start,
and answers ``POST /predict`` one request at a time: a plain ``def`` route, so FastAPI runs
each call in its thread pool, as most such apps do. Torch threads: ``$TORCH_THREADS``.
Used by ``bench/serve.py``; run as ``uvicorn serve_baseline_app:app --app-dir bench``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer
from sklearn.linear_model import LogisticRegression

torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
_pairs = json.loads(Path(os.environ["BASELINE_TRAIN"]).read_text())
_encoder = SentenceTransformer(os.environ["BASELINE_MODEL"], device="cpu")
_classifier = LogisticRegression(max_iter=1000).fit(
    _encoder.encode([t for t, _ in _pairs], normalize_embeddings=True), [y for _, y in _pairs]
)

app = FastAPI()


class Request(BaseModel):
    text: str


@app.get("/readyz")
def readyz() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/predict")
def predict(request: Request) -> dict[str, object]:
    vector = _encoder.encode([request.text], normalize_embeddings=True)
    probs = _classifier.predict_proba(vector)[0]
    best = int(probs.argmax())
    return {"label": str(_classifier.classes_[best]), "score": float(probs[best])}
