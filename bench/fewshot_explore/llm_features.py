"""Few-shot BANKING77, validation only: do a small LLM's prompt embeddings add to frozen mpnet?

Every earlier probe found the few-shot ceiling to be the frozen encoder's. The one other
network this machine has is a generator (Qwen2.5-Coder-0.5B, from the GGUF dequantized by
transformers). A decoder's hidden state is a poor sentence vector on its own, but with a
PromptEOL prompt (``This ... : "<text>" means in one word:"``, the last token's state) it
carries what the model would say next, which may separate near intents that mpnet's
vectors do not. This probe fits the shipped head (logistic regression, C 10, labels'
names as examples) on L2-normalised mpnet vectors, on the LLM's vectors, and on the two
joined (the LLM's part scaled by ``a``), on the same 3 draws at 5 and 10 per intent and
their validation samples as ``bench/fewshot.py`` (5 per intent outside the draw's 20-shot
set; the test split is not read).

    flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \\
        .venv/bin/python bench/fewshot_explore/llm_features.py

Writes bench/results/fewshot_llm_features.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from heads import write_rows
from self_train import CACHE, unit, vectors

from fewshot import draw, read
from slmstack.skills._label_words import name_texts

OUT = Path(__file__).resolve().parents[1] / "results" / "fewshot_llm_features.json"
PROMPT = 'This customer message to a bank: "{}" means in one word:"'
LAYERS = (-1, 12)


def llm_vectors(texts: list[str], model_ref: str = "qwen2.5-0.5b") -> dict[int, Any]:
    """The last token's hidden state at each of ``LAYERS``, for every text (cached)."""
    paths = {layer: CACHE / f"llm-{model_ref}-{layer}-{len(texts)}.npy" for layer in LAYERS}
    if all(p.exists() for p in paths.values()):
        return {layer: np.load(p) for layer, p in paths.items()}
    import torch

    from slmstack.models.causal_lm import load_causal_lm

    model, tok, _ = load_causal_lm(model_ref)
    tok.padding_side = "left"
    out: dict[int, list[Any]] = {layer: [] for layer in LAYERS}
    start = time.time()
    with torch.inference_mode():
        for i in range(0, len(texts), 32):
            batch = [PROMPT.format(t) for t in texts[i : i + 32]]
            enc = tok(batch, return_tensors="pt", padding=True)
            hidden = model(**enc, output_hidden_states=True).hidden_states
            for layer in LAYERS:
                out[layer].append(hidden[layer][:, -1, :].float().numpy())
            if i % 640 == 0:
                print(f"  llm vectors {i}/{len(texts)} {time.time() - start:.0f}s", flush=True)
    CACHE.mkdir(exist_ok=True)
    result = {}
    for layer in LAYERS:
        result[layer] = np.concatenate(out[layer])
        np.save(paths[layer], result[layer])
    return result


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    texts, labels = read("train")
    lab = np.array(labels)
    plan = [(seed, k, *draw(texts, labels, k, seed, 5)) for seed in (0, 1, 2) for k in (5, 10)]
    used = sorted({i for *_, tr, va in plan for i in (*tr, *va)})
    classes = sorted(set(labels))
    names = name_texts(classes)
    start = time.time()
    mp_all = vectors("mpnet", texts)
    from sentence_transformers import SentenceTransformer

    from slmstack.models.resolve import resolve

    st = SentenceTransformer(str(resolve("mpnet").path), device="cpu")
    mp_names = unit(st.encode(names, batch_size=64, show_progress_bar=False))
    del st
    llm = llm_vectors([texts[i] for i in used] + names)
    pos = {i: j for j, i in enumerate(used)}
    print(f"vectors ready {time.time() - start:.0f}s", flush=True)
    scores: dict[tuple[int, str], list[float]] = {}

    def fit_score(key: str, k: int, xs: Any, ys: Any, xv: Any, yv: Any) -> None:
        model = LogisticRegression(C=10, max_iter=3000).fit(xs, ys)
        acc = float((model.predict(xv) == yv).mean() * 100)
        scores.setdefault((k, key), []).append(acc)

    for _seed, k, tr, va in plan:
        ys = np.concatenate([lab[tr], np.array(classes)])
        yv = lab[va]
        mp_tr = np.vstack([unit(mp_all[tr]), mp_names])
        mp_va = unit(mp_all[va])
        fit_score("mpnet (the shipped head, names)", k, mp_tr, ys, mp_va, yv)
        for layer, vec in llm.items():
            vec = vec - vec[: len(used)].mean(0)  # centred: a decoder's states share a large mean
            q_tr = unit(np.vstack([vec[[pos[i] for i in tr]], vec[len(used) :]]))
            q_va = unit(vec[[pos[i] for i in va]])
            fit_score(f"qwen layer {layer} alone", k, q_tr, ys, q_va, yv)
            for a in (0.5, 1.0):
                joined_tr = np.hstack([mp_tr, a * q_tr])
                joined_va = np.hstack([mp_va, a * q_va])
                fit_score(f"mpnet + {a} x qwen layer {layer}", k, joined_tr, ys, joined_va, yv)
    write_rows(OUT, "llm_features.py", scores, round(time.time() - start),
               llm="qwen2.5-0.5b (Qwen2.5-Coder-0.5B-Instruct, dequantized fp32)",
               prompt=PROMPT, layers=list(LAYERS))  # fmt: skip


if __name__ == "__main__":
    main()
