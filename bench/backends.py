"""llama.cpp against transformers: the same GGUF model, the same prompt, the same run.

For each model, each runtime loads the same GGUF file (transformers dequantizes it to
fp32) and generates greedily from the same chat prompt, ``--repeats`` times after one
warm-up call. Reported: load time, output tokens per second (generation wall time,
prompt included, as a user sees it), and the ratio. The transformers load is measured
twice: cold (dequantizing the GGUF, as on a first run) and warm (slmstack's cached
fp32 safetensors). llama.cpp runs with 1 and with 2 threads: on a 2-core machine shared
with other work, ggml's spinning thread pool can lose more than it gains from a second
thread (llama-cpp-python's own default is half the cores).

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


def timed(backend, request):
    start = time.perf_counter()
    out = backend.complete(request)
    return out.usage.output_tokens / (time.perf_counter() - start), out.usage.output_tokens


def bench_model(alias, max_tokens, repeats, llama_threads):
    """Rows (runtime, load, tokens/s, output tokens); calls interleaved across runtimes."""
    request = CompletionRequest([ChatMessage("user", PROMPT)], max_tokens=max_tokens)
    gguf = gguf_path(alias)
    backends, loads = {}, {}
    for n in llama_threads:
        start = time.perf_counter()
        backends[f"llama.cpp, {n} thread{'s' if n > 1 else ''}"] = LlamaCppBackend(
            gguf, name=alias, n_threads=n
        )
        loads[f"llama.cpp, {n} thread{'s' if n > 1 else ''}"] = f"{time.perf_counter() - start:.2f}"

    cached = cache_root() / "dequantized" / sha256_file(gguf)[:16]
    shutil.rmtree(cached, ignore_errors=True)
    start = time.perf_counter()
    TransformersBackend.from_ref(alias, cache_dequantized=False)
    cold = time.perf_counter() - start
    TransformersBackend.from_ref(alias)  # writes the cache
    start = time.perf_counter()
    backends["transformers"] = TransformersBackend.from_ref(alias)
    loads["transformers"] = (
        f"{cold:.1f} cold (dequantize) / {time.perf_counter() - start:.1f} cached"
    )

    for backend in backends.values():
        backend.complete(request)  # warm-up: first-call allocations
    # Interleaved, so a change in machine load hits every runtime alike.
    samples = {name: [] for name in backends}
    for _ in range(repeats):
        for name, backend in backends.items():
            samples[name].append(timed(backend, request))
    return [
        (
            name,
            loads[name],
            statistics.median(r for r, _ in samples[name]),
            statistics.median(t for _, t in samples[name]),
        )
        for name in backends
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2", "qwen2.5-0.5b"])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--llama-threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    import torch

    lines = [
        f"Prompt: one support-reply request ({len(PROMPT)} characters), chat template, greedy, "
        f"max_tokens={args.max_tokens}; median of {args.repeats} calls after a warm-up; "
        f"calls interleaved across runtimes; torch threads={torch.get_num_threads()}.",
        "",
        "| model | runtime | load (s) | output tokens | tokens/s | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for alias in args.models:
        rows = bench_model(alias, args.max_tokens, args.repeats, args.llama_threads)
        base = rows[-1][2]  # transformers
        for name, load, rate, tokens in rows:
            lines.append(
                f"| {alias} | {name} | {load} | {tokens:.0f} | {rate:.1f} | "
                f"**{rate / base:.2f}×** |"
            )
            print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
