"""CUAD exploration (validation only): does a MiniLM fine-tuned on clause text earn its keep?

Same split as ``frozen_fusion.py`` (the first 150 contracts by name; index % 5 == 0 are
test contracts and never read; index % 5 == 1 validate; the rest fit). all-MiniLM-L6-v2
is fine-tuned multi-label on the fit clauses (BCE with a square-rooted positive weight
capped at 10, mean-pooled and L2-normalised vectors times 10 into a linear head, AdamW
lr 5e-5 for the encoder and 1e-3 for the head, batch 16, first 128 tokens, bf16
autocast, ``sys.argv[1]`` epochs, default 1). Its vectors then join TF-IDF the ways
``frozen_fusion.py`` tries, with each type's threshold tuned on the skill's held-out 20%.

    flock /tmp/slmstack-cpu.lock .venv/bin/python bench/cuad_explore/tuned_encoder.py 1 \
        > /tmp/cuad_ft.log 2>&1
"""

import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from _common import micro_macro, probs, split, tfidf, thresholds
from scipy import sparse

from slmstack.models.encoder import autocast, length_batches, mean_pool, pad_batch, tokenize
from slmstack.models.resolve import resolve
from slmstack.models.shared import private_copy, shared_encoder, shared_tokenizer

torch.set_num_threads(2)
torch.manual_seed(0)
EPOCHS = int(sys.argv[1]) if len(sys.argv) > 1 else 1
ML = 128
fit, val, types, yf, yv = split()
src = resolve("minilm")
tokz = shared_tokenizer(src.path)
enc = private_copy(shared_encoder(src))
head = torch.nn.Linear(384, len(types))
tf = tokenize(tokz, [e.text for e in fit], ML)
tv = tokenize(tokz, [e.text for e in val], ML)
pad = tokz.pad_token_id or 0
opt = torch.optim.AdamW(
    [{"params": enc.parameters(), "lr": 5e-5}, {"params": head.parameters(), "lr": 1e-3}],
    weight_decay=0.01,
)
pos = yf.sum(0)
posw = torch.tensor(
    np.clip((len(yf) - pos) / np.maximum(pos, 1), 1, 10) ** 0.5, dtype=torch.float32
)
rng = np.random.default_rng(0)


def embed(tok):
    enc.eval()
    out = np.zeros((len(tok.input_ids), 384), np.float32)
    with torch.inference_mode(), autocast("bf16"):
        for idx in length_batches(tok.lengths, 64):
            ids, m = pad_batch([tok.input_ids[i][:ML] for i in idx], pad)
            v = F.normalize(
                mean_pool(enc(input_ids=ids, attention_mask=m).last_hidden_state, m).float(), dim=-1
            )
            out[idx] = v.numpy()
    return out


for ep in range(EPOCHS):
    enc.train()
    t0 = time.time()
    order = rng.permutation(len(fit))
    tot = 0
    # length-bucketed shuffled batches
    batches = [order[i : i + 16] for i in range(0, len(order), 16)]
    for b, idx in enumerate(batches):
        ids, m = pad_batch([tf.input_ids[i][:ML] for i in idx], pad)
        with autocast("bf16"):
            v = mean_pool(enc(input_ids=ids, attention_mask=m).last_hidden_state, m)
            logits = head(F.normalize(v.float(), dim=-1) * 10)
        loss = F.binary_cross_entropy_with_logits(
            logits.float(), torch.from_numpy(yf[idx].astype(np.float32)), pos_weight=posw
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        tot += loss.item()
        if b % 100 == 0:
            print(ep, b, len(batches), round(tot / (b + 1), 4), round(time.time() - t0), flush=True)
    print("epoch", ep, time.time() - t0, flush=True)
df, dv = embed(tf), embed(tv)
np.savez(f"/tmp/cuad_ft_{EPOCHS}.npz", f=df, v=dv)
xf_t, xv_t = tfidf(fit, val)


def scored(c, xf, xv):
    p_ho, p_val = probs(c, xf, xv, yf)
    return p_val, p_ho, thresholds(p_ho, yf)


p_t, pho_t, thr_t = scored(4.0, xf_t, xv_t)
print("tfidf C4", micro_macro(p_t, thr_t, yv), flush=True)
p_t16, pho_t16, thr_t16 = scored(16.0, xf_t, xv_t)
print("tfidf C16", micro_macro(p_t16, thr_t16, yv), flush=True)
for c in (4.0, 32.0):
    p_d, pho_d, thr_d = scored(c, sparse.csr_matrix(df), sparse.csr_matrix(dv))
    print("tuned dense C", c, micro_macro(p_d, thr_d, yv), flush=True)
    for a in (0.3, 0.5, 0.7):
        for name, pt, phot in (("C4", p_t, pho_t), ("C16", p_t16, pho_t16)):
            thr = thresholds(a * phot + (1 - a) * pho_d, yf)
            score = micro_macro(a * pt + (1 - a) * p_d, thr, yv)
            print("late tfidf", name, "dense C", c, "a", a, score, flush=True)
for w in (0.5, 1.0, 2.0):
    for c in (4.0, 16.0):
        xf = sparse.hstack([xf_t, sparse.csr_matrix(w * df)]).tocsr()
        xv = sparse.hstack([xv_t, sparse.csr_matrix(w * dv)]).tocsr()
        p, _, thr = scored(c, xf, xv)
        print("concat w", w, "C", c, micro_macro(p, thr, yv), flush=True)
