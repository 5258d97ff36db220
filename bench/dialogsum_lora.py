"""DialogSum: a LoRA-tuned SmolLM2-135M summariser against prompted local models, one run.

Data: ``../shared/datasets/dialogsum/dialogsum.dev.jsonl`` (500 dialogues, one reference
each; CC BY-NC-SA 4.0, evaluation only), read in place. Fixed split by position: rows
1-400 are the training part, rows 401-500 are the 100 validation dialogues that are
reported. Every choice is made inside the training part, on its last ``--inner`` rows
(default 40; "inner"), which LoRA does not train on: the best epoch (validation token
loss, :func:`slmstack.training.lora.train_lora` with ``val_pairs``) and the number of
lead turns of the baseline (ROUGE-L). The sentence bound of the LoRA summariser is the
smallest that covers 95% of the training references. The prompted models keep the
settings of ``bench/summaries.py`` (``max_sentences=2``, its speaker instruction), fixed
before this run. The 100 are scored once per system.

Systems, all scored with :func:`slmstack.evaluation.summaries.rouge_scores` (rouge-score,
stemmed, F1): (a) the first N turns of the dialogue; (b, c) ``Summarizer`` on llama.cpp
with SmolLM2-135M and Qwen2.5-Coder-0.5B, through ``bench/summaries.py``'s own worker,
each in its own process; (d) ``Summarizer(runtime="transformers", adapter=DIR)`` with the
adapter trained here (the product path). The adapter is trained on the exact messages
that Summarizer sends (:func:`slmstack.skills.summary_text.lora_pairs`); dialogues too
long for ``--max-length`` lose their last turns in training, never their summary.

Run (heavy; it does not take the lock itself)::

    flock /tmp/slmstack-cpu.lock nice -n 5 .venv/bin/python bench/dialogsum_lora.py \
        --write-results > /tmp/bench_dialogsum_lora.log 2>&1

A run cut short (say a model package was missing) goes on with ``--resume``: the systems
already in ``bench/results/dialogsum_lora.json`` are kept and only the others run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SLMSTACK_PROGRESS", "1")  # the training bar (summaries.py sets 0)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine
from summaries import DATA, INSTRUCTIONS

REPO = Path(__file__).resolve().parents[1]
JSON_OUT = REPO / "bench" / "results" / "dialogsum_lora.json"
LEADS = (1, 2, 3, 4, 5, 6)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def lead(dialogue: str, n: int) -> str:
    """The first ``n`` turns (lines) of a dialogue, on one line."""
    return " ".join(dialogue.splitlines()[:n])


def fit_dialogue(tok: Any, system: str, prompt_of: Any, dialogue: str, summary: str,
                 max_length: int) -> tuple[str, bool]:  # fmt: skip
    """Drop the last turns of ``dialogue`` until prompt + summary fit ``max_length`` tokens."""
    from slmstack.training.lora import encode_pair

    lines = dialogue.splitlines()
    for keep in range(len(lines), 0, -1):
        text = "\n".join(lines[:keep])
        ids, _, _ = encode_pair(tok, prompt_of(text), summary, system_prompt=system,
                                max_length=10**9)  # fmt: skip
        if len(ids) <= max_length:
            return text, keep < len(lines)
    return lines[0], True


def score_lead(train: list[dict], inner: list[dict], val: list[dict]) -> dict[str, Any]:
    from slmstack.evaluation.summaries import rouge_scores

    refs = [r["summary"] for r in inner]
    tried = {n: rouge_scores([lead(r["dialogue"], n) for r in inner], refs) for n in LEADS}
    best = max(LEADS, key=lambda n: tried[n]["rougeL"])
    start = time.perf_counter()
    outputs = [lead(r["dialogue"], best) for r in val]
    seconds = time.perf_counter() - start
    return {"system": f"lead-{best} turns", "n_lead": best,
            "inner": {str(n): s for n, s in tried.items()},
            **rouge_scores(outputs, [r["summary"] for r in val]),
            "s_per_dialogue": seconds / len(val), "example": outputs[0],
            "outputs": outputs}  # fmt: skip


def train_adapter(args: argparse.Namespace, fit: list[dict], inner: list[dict],
                  max_sentences: int, out: Path) -> dict[str, Any]:  # fmt: skip
    from slmstack.models.causal_lm import load_causal_lm
    from slmstack.skills.summary_text import lora_pairs
    from slmstack.training.lora import LoraSettings, train_lora

    def pairs_of(rows: list[dict]) -> tuple[str, list[tuple[str, str]]]:
        return lora_pairs([(r["dialogue"], r["summary"]) for r in rows],
                          max_sentences=max_sentences, instructions=INSTRUCTIONS)  # fmt: skip

    system, _ = pairs_of(fit[:1])
    _, tok, _ = load_causal_lm(args.base)  # the tokenizer; the model is dropped

    def prompt_of(text: str) -> str:
        return pairs_of([{"dialogue": text, "summary": ""}])[1][0][0]

    cut = 0
    rows: dict[str, list[tuple[str, str]]] = {}
    for name, part in (("fit", fit), ("inner", inner)):
        rows[name] = []
        for r in part:
            text, was_cut = fit_dialogue(tok, system, prompt_of, r["dialogue"], r["summary"],
                                         args.max_length)  # fmt: skip
            cut += was_cut
            rows[name].append((prompt_of(text), r["summary"]))
    settings = LoraSettings(epochs=args.epochs, learning_rate=args.lr, batch_size=8,
                            max_length=args.max_length, val_fraction=0.0,
                            system_prompt=system, seed=0, max_steps=args.max_steps,
                            bf16=not args.fp32)  # fmt: skip
    log(f"training LoRA on {len(rows['fit'])} pairs, validating on {len(rows['inner'])} "
        f"({cut} dialogues cut to fit {args.max_length} tokens)")  # fmt: skip
    start = time.perf_counter()
    result = train_lora(rows["fit"], out, base=args.base, settings=settings,
                        val_pairs=rows["inner"])  # fmt: skip
    wall = time.perf_counter() - start
    log(f"trained in {wall:.0f} s; validation loss {result.val_loss_before} -> "
        f"{result.val_loss}; best epoch {result.best_epoch}")  # fmt: skip
    return {"seconds": wall, "train_seconds": result.seconds, "steps": len(result.steps),
            "n_train": result.n_train, "n_inner": result.n_val, "dialogues_cut": cut,
            "val_loss_before": result.val_loss_before, "val_loss": result.val_loss,
            "best_epoch": result.best_epoch, "epochs": args.epochs, "lr": args.lr,
            "max_length": args.max_length, "rank": settings.rank, "batch_size": 8,
            "bf16": settings.bf16,
            "loss_curve": [(s["step"], round(s["loss"], 4)) for s in result.steps],
            "adapter_kb": (out / "adapter_model.safetensors").stat().st_size / 1024}  # fmt: skip


def score_lora(args: argparse.Namespace, val: list[dict], adapter: Path,
               max_sentences: int) -> dict[str, Any]:  # fmt: skip
    from slmstack import Summarizer
    from slmstack.evaluation.summaries import rouge_scores

    skill = Summarizer(model=args.base, runtime="transformers", adapter=adapter,
                       max_sentences=max_sentences, instructions=INSTRUCTIONS).fit([])  # fmt: skip
    preds, start = [], time.perf_counter()
    for i, r in enumerate(val):
        preds.append(skill.predict([r["dialogue"]])[0])
        if i % 10 == 9:
            log(f"LoRA after {i + 1}: {preds[-1].text!r}")
    seconds = time.perf_counter() - start
    outputs = [p.text or "" for p in preds]
    tokens = sum(p.usage.output_tokens for p in preds)
    return {"system": f"{args.base} + LoRA (Summarizer, transformers)",
            **rouge_scores(outputs, [r["summary"] for r in val]),
            "s_per_dialogue": seconds / len(val), "tokens_per_s": tokens / seconds,
            "max_sentences": max_sentences, "max_tokens": skill._budget(),
            "cut": sum(1 for p in preds if p.warnings),
            "abstained": sum(1 for p in preds if p.abstained),
            "example": outputs[0], "outputs": outputs}  # fmt: skip


def score_prompted(model: str, val_file: Path, n: int) -> dict[str, Any]:
    """``bench/summaries.py``'s worker on the validation rows, in its own process."""
    cmd = [sys.executable, str(REPO / "bench" / "summaries.py"), "--worker", model,
           "--limit", str(n), "--max-sentences", "2", "--data", str(val_file)]  # fmt: skip
    env = {**os.environ, "SLMSTACK_PROGRESS": "0"}
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False, env=env)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not line:
        sys.exit(f"summaries.py worker for {model} failed with exit code {proc.returncode}")
    r = json.loads(line[-1][len("RESULT ") :])
    return {**r, "system": f"{model} prompted (Summarizer, llama.cpp)", "max_sentences": 2}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--train", type=int, default=400, help="training part: the first rows")
    p.add_argument("--val", type=int, default=100, help="reported: the next rows")
    p.add_argument("--inner", type=int, default=40, help="last training rows held out")
    p.add_argument("--base", default="smollm2")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--max-length", type=int, default=384)
    p.add_argument("--fp32", action="store_true", help="train without bfloat16 autocast")
    p.add_argument("--models", nargs="*", default=["smollm2", "qwen2.5-0.5b"])
    p.add_argument("--adapter-dir", type=Path, default=None, help="default: a temp folder")
    p.add_argument("--resume", action="store_true",
                   help="keep the systems already in the result file; run the others")  # fmt: skip
    p.add_argument(
        "--write-results",
        action="store_true",
        help="write bench/results/dialogsum_lora.json and the RESULTS.md section",
    )
    args = p.parse_args()  # fmt: skip
    if not args.data.is_file():
        sys.exit(
            f"missing {args.data}: this benchmark needs the DialogSum dev file from "
            "../shared/datasets/dialogsum (cylnlp/dialogsum @848cc8c); pass --data PATH."
        )
    from slmstack.skills.summary_text import split_sentences

    rows = [json.loads(x) for x in args.data.read_text().splitlines() if x.strip()]
    if len(rows) < args.train + args.val or args.inner >= args.train:
        sys.exit(f"{args.data} has {len(rows)} rows; --train {args.train} + --val {args.val} "
                 f"do not fit, or --inner {args.inner} >= --train")  # fmt: skip
    train, val = rows[: args.train], rows[args.train : args.train + args.val]
    fit, inner = train[: -args.inner], train[-args.inner :]
    counts = sorted(len(split_sentences(r["summary"])) for r in train)
    max_sentences = counts[math.ceil(0.95 * len(counts)) - 1]
    report: dict[str, Any] = {
        "benchmark": "bench/dialogsum_lora.py", "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                        time.gmtime()),
        "machine": machine(), "command": " ".join(sys.argv[1:]),
        "data": {"file": str(args.data.name), "train_rows": f"1-{args.train}",
                 "inner_rows": f"{args.train - args.inner + 1}-{args.train}",
                 "val_rows": f"{args.train + 1}-{args.train + args.val}"},
        "lora_max_sentences": max_sentences, "systems": {},
    }  # fmt: skip

    def save() -> None:
        if args.write_results:
            JSON_OUT.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")

    if args.resume:
        resume(report)
    if "lead" not in report["systems"]:
        report["systems"]["lead"] = score_lead(train, inner, val)
        log(f"lead: {report['systems']['lead']['system']} ROUGE-L "
            f"{report['systems']['lead']['rougeL']:.2f}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="dialogsum-lora-") as tmp:
        if "lora" not in report["systems"]:
            adapter = args.adapter_dir or Path(tmp) / "adapter"
            report["training"] = train_adapter(args, fit, inner, max_sentences, adapter)
            save()
            report["systems"]["lora"] = score_lora(args, val, adapter, max_sentences)
            log(f"LoRA ROUGE-L {report['systems']['lora']['rougeL']:.2f}")
            save()
        val_file = Path(tmp) / "val.jsonl"
        val_file.write_text("".join(json.dumps(r) + "\n" for r in val))
        for model in [m for m in args.models if m not in report["systems"]]:
            log(f"prompted {model} on {len(val)} dialogues")
            report["systems"][model] = score_prompted(model, val_file, len(val))
            log(f"{model} ROUGE-L {report['systems'][model]['rougeL']:.2f}")
            save()
    print_table(report)
    if args.write_results:
        from _dialogsum_section import write_section

        write_section(report)
        log(f"wrote {JSON_OUT} and the bench/RESULTS.md section")


def resume(report: dict[str, Any]) -> None:
    """Keep the systems of an earlier run of the same split (a run cut short)."""
    if not JSON_OUT.is_file():
        sys.exit(f"--resume needs {JSON_OUT} from an earlier run")
    old = json.loads(JSON_OUT.read_text())
    if old["data"] != report["data"]:
        sys.exit(f"{JSON_OUT} was made on another split ({old['data']}); run without --resume")
    runs = old.get("runs") or [{"command": old["command"], "date": old["date"]}]
    report["runs"] = [*runs, {"command": report["command"], "date": report["date"]}]
    for key in ("date", "command", "lora_max_sentences", "training"):
        if key in old:
            report[key] = old[key]
    report["systems"] = old["systems"]
    log(f"resumed: kept {', '.join(old['systems'])} from the run of {old['date']}")


def print_table(report: dict[str, Any]) -> None:
    print("| system | ROUGE-1 | ROUGE-2 | ROUGE-L | s/dialogue |")
    print("|---|---|---|---|---|")
    for s in report["systems"].values():
        print(f"| {s['system']} | {s['rouge1']:.2f} | {s['rouge2']:.2f} | {s['rougeL']:.2f} | "
              f"{s['s_per_dialogue']:.2f} |")  # fmt: skip
    for s in report["systems"].values():
        print(f"{s['system']}: {s['example']!r}")


if __name__ == "__main__":
    main()
