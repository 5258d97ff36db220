"""LoRA fine-tuning of SmolLM2 on CPU: loss curve and before/after scores on held-out pairs.

Task: the opening of a customer-support reply. Data:
``../shared/datasets/bitext_llm_responses`` (customer instruction → agent response,
CDLA-Sharing-1.0). The response is cut to its first two sentences so that generation
for scoring stays short on 2 cores. Rows are shuffled with a fixed seed; ``--train``
pairs (default 300) train the adapter and the next ``--test`` pairs (default 40) are
held out: never seen in training.

Reported, base model against base + adapter, in the same process and on the same
held-out pairs: mean token loss of the reference response, and ROUGE-1/L of the greedy
generation against the reference; plus the training loss curve and wall time.

Run (heavy: wrap it in the shared CPU lock)::

    flock /tmp/slmstack-cpu.lock .venv/bin/python bench/lora.py > /tmp/bench_lora.log 2>&1
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import time
from pathlib import Path

from _machine import scratch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SLMSTACK_PROGRESS", "0")

REPO = Path(__file__).resolve().parents[1]
DATA = (
    REPO.parent
    / "shared"
    / "datasets"
    / "bitext_llm_responses"
    / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
)
SYSTEM = "You are a customer-support agent. Reply to the customer."


def load_pairs(path: Path, seed: int) -> list[tuple[str, str]]:
    from slmstack.skills.summarizer import split_sentences

    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    pairs = [
        (r["instruction"].strip(), " ".join(split_sentences(" ".join(r["response"].split()))[:2]))
        for r in rows
        if r["instruction"].strip() and r["response"].strip()
    ]
    random.Random(seed).shuffle(pairs)
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--test", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(
            f"missing {args.data}: this benchmark needs ../shared/datasets/bitext_llm_responses "
            "(bitext/customer-support-llm-chatbot-training-dataset @337b968); pass --data."
        )
    from slmstack.backends import ChatMessage, CompletionRequest
    from slmstack.backends.transformers_lm import TransformersBackend
    from slmstack.evaluation.summaries import rouge_scores
    from slmstack.training.lora import LoraSettings, _mean_loss, encode_pair, train_lora

    pairs = load_pairs(args.data, args.seed)
    train, test = pairs[: args.train], pairs[args.train : args.train + args.test]
    settings = LoraSettings(
        epochs=args.epochs,
        learning_rate=args.lr,
        batch_size=8,
        max_length=160,
        val_fraction=0.1,
        system_prompt=SYSTEM,
        seed=args.seed,
    )
    out = scratch("slmstack-lora-")
    result = train_lora(train, out, base="smollm2", settings=settings)
    size_kb = (out / "adapter_model.safetensors").stat().st_size / 1024

    backend = TransformersBackend.from_ref("smollm2", adapters={"support": out})
    tuned = backend.with_adapter("support")
    tok = backend.tokenizer
    rows = [
        encode_pair(tok, p, r, system_prompt=SYSTEM, max_length=settings.max_length)[:2]
        for p, r in test
    ]
    with backend.model.disable_adapter():
        loss_before = _mean_loss(backend.model, rows, int(tok.pad_token_id), 8)
    backend.model.set_adapter("support")
    loss_after = _mean_loss(backend.model, rows, int(tok.pad_token_id), 8)

    def generate(llm):
        outs, tokens, start = [], 0, time.perf_counter()
        for prompt, _ in test:
            msgs = [ChatMessage("system", SYSTEM), ChatMessage("user", prompt)]
            c = llm.complete(CompletionRequest(msgs, max_tokens=args.max_new_tokens))
            outs.append(c.text)
            tokens += c.usage.output_tokens
        return outs, tokens / (time.perf_counter() - start)

    refs = [r for _, r in test]
    before, rate_b = generate(backend)
    after, rate_a = generate(tuned)
    rb, ra = rouge_scores(before, refs), rouge_scores(after, refs)

    curve = result.steps
    every = max(1, len(curve) // 12)
    shown = curve[::every] + ([curve[-1]] if (len(curve) - 1) % every else [])
    points = ", ".join(f"{s['step']}: {s['loss']:.2f}" for s in shown)
    print(
        f"Train {len(train)} pairs ({result.n_train} trained, {result.n_val} validation), "
        f"test {len(test)} held-out pairs; {len(curve)} steps, batch 8, lr {args.lr}, "
        f"rank 8, {args.epochs} epoch(s); training {result.seconds:.0f} s on 2 cores; "
        f"adapter {size_kb:.0f} KB; {result.truncated_pairs} pairs cut at 160 tokens.\n"
    )
    print(
        f"Loss curve (step: training loss): {points}, {curve[-1]['step']}: {curve[-1]['loss']:.2f}"
    )
    print(
        f"Validation loss {result.val_loss_before:.3f} → "
        + " → ".join(f"{v:.3f}" for v in result.val_loss)
        + " (per epoch)\n"
    )
    print(f"| held-out ({len(test)} pairs) | token loss | ROUGE-1 | ROUGE-L | tokens/s |")
    print("|---|---|---|---|---|")
    print(
        f"| SmolLM2 base | {loss_before:.3f} | {rb['rouge1']:.2f} | {rb['rougeL']:.2f} | "
        f"{rate_b:.1f} |"
    )
    print(
        f"| SmolLM2 + LoRA | {loss_after:.3f} | {ra['rouge1']:.2f} | {ra['rougeL']:.2f} | "
        f"{rate_a:.1f} |"
    )
    print(
        f"\nexample prompt: {test[0][0]!r}\nreference: {refs[0]!r}\n"
        f"base: {before[0]!r}\nLoRA: {after[0]!r}"
    )


if __name__ == "__main__":
    main()
