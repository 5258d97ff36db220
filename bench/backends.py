"""llama.cpp against transformers: the same GGUF model, the same prompt, the same run.

For each model, each runtime loads the same GGUF file (transformers dequantizes it to
fp32) and generates greedily from the same chat prompt, ``--repeats`` times after one
warm-up call. Reported: load time, output tokens per second (generation wall time,
prompt included, as a user sees it), and the ratio. The transformers load is measured
twice: cold (dequantizing the GGUF, as on a first run) and warm (slmstack's cached
fp32 safetensors).

No dataset is needed. Run (heavy: wrap it in the shared CPU lock)::

    flock /tmp/slmstack-cpu.lock .venv/bin/python bench/backends.py > /tmp/bench_backends.log 2>&1
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SLMSTACK_PROGRESS", "0")

from slmstack.backends import ChatMessage, CompletionRequest, gguf_path
from slmstack.backends.llama_cpp import LlamaCppBackend
from slmstack.backends.transformers_lm import TransformersBackend
from slmstack.models.hashing import sha256_file
from slmstack.models.parts import cache_root

PROMPT = (
    "A customer writes: 'My order #4512 arrived two weeks late and the box was damaged. "
    "The blender inside works, but the lid is cracked.' Write a polite reply that "
    "apologises, explains the next steps for a replacement lid, and thanks them."
)


def run_requests(backend, request, repeats):
    backend.complete(request)  # warm-up: first-call allocations, prompt cache
    rates, tokens = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        out = backend.complete(request)
        seconds = time.perf_counter() - start
        rates.append(out.usage.output_tokens / seconds)
        tokens.append(out.usage.output_tokens)
    return statistics.median(rates), statistics.median(tokens)


def bench_model(alias, max_tokens, repeats):
    request = CompletionRequest([ChatMessage("user", PROMPT)], max_tokens=max_tokens)
    gguf = gguf_path(alias)
    rows = []

    start = time.perf_counter()
    llama = LlamaCppBackend(gguf, name=alias, n_threads=2)
    llama_load = time.perf_counter() - start
    rate, tokens = run_requests(llama, request, repeats)
    rows.append(("llama.cpp", llama_load, rate, tokens))
    del llama

    cached = cache_root() / "dequantized" / sha256_file(gguf)[:16]
    shutil.rmtree(cached, ignore_errors=True)
    start = time.perf_counter()
    TransformersBackend.from_ref(alias, cache_dequantized=False)
    cold = time.perf_counter() - start
    TransformersBackend.from_ref(alias)  # writes the cache
    start = time.perf_counter()
    tf = TransformersBackend.from_ref(alias)
    warm = time.perf_counter() - start
    rate_tf, tokens_tf = run_requests(tf, request, repeats)
    rows.append(("transformers", (cold, warm), rate_tf, tokens_tf))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2", "qwen2.5-0.5b"])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch

    lines = [
        f"Prompt: one support-reply request ({len(PROMPT)} characters), chat template, greedy, "
        f"max_tokens={args.max_tokens}; median of {args.repeats} calls after a warm-up; "
        f"llama.cpp n_threads=2, torch threads={torch.get_num_threads()}.",
        "",
        "| model | runtime | load (s) | output tokens | tokens/s | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for alias in args.models:
        (name_l, load_l, rate_l, tok_l), (name_t, (cold, warm), rate_t, tok_t) = bench_model(
            alias, args.max_tokens, args.repeats
        )
        lines.append(
            f"| {alias} | {name_l} | {load_l:.2f} | {tok_l:.0f} | {rate_l:.1f} | "
            f"**{rate_l / rate_t:.2f}×** |"
        )
        lines.append(
            f"| {alias} | {name_t} | {cold:.1f} cold (dequantize) / {warm:.1f} cached | "
            f"{tok_t:.0f} | {rate_t:.1f} | 1.00× |"
        )
        print("\n".join(lines[-2:]), flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
