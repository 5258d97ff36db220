"""The SST-2 section of ``bench/RESULTS.md``, written from ``bench/results/sst2.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from _machine import replace_section

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SECTION = "## SST-2 sentiment, dev accuracy (`bench/sst2.py`)"
NAMES = {
    "majority": "majority label",
    "tfidf_lr": "TF-IDF 1-2 grams + LogisticRegression",
    "head_minilm": 'frozen MiniLM + LR (`strategy="head"`)',
    "finetune_minilm": 'fine-tuned MiniLM (`strategy="finetune"`, 22M)',
    "finetune_mpnet": 'fine-tuned mpnet (`strategy="finetune", base="mpnet"`, 110M)',
}


def _num(row: dict[str, Any], key: str, fmt: str = "{:,.1f}") -> str:
    value = row.get(key)
    return "–" if value is None else fmt.format(value)


def _system_rows(data: dict[str, Any]) -> list[str]:
    lines = ["| system | train rows | validation acc. | dev acc. | train s | train samples/s "
             "| predict texts/s (dev) | truncated (train/val/dev) |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in data["systems"]:
        trunc = row.get("truncated")
        cut = f"{trunc['train']}/{trunc['val']}/{trunc['dev']}" if trunc else "–"
        epochs = (f", best epoch {row['best_epoch']} of {len(row['history'])}"
                  if row.get("history") else "")  # fmt: skip
        name = NAMES.get(row["system"], row["system"])
        lines.append(
            f"| {name}{epochs} | {_num(row, 'train_rows', '{:,}')} "
            f"| {row['val_accuracy']:.2f} | **{row['dev_accuracy']:.2f}** "
            f"| {_num(row, 'train_seconds')} | {_num(row, 'train_samples_per_s')} "
            f"| {_num(row, 'predict_texts_per_s')} | {cut} |"
        )
    return lines


def _probe_rows(probe: dict[str, Any] | None) -> list[str]:
    if not probe:
        return []
    lines = ["", f"Timing probe ({probe['date']}, `{probe['command']}`): fine-tuning steps of "
             "batch 32 on pool phrases, max_length 64, then one forward pass over them.", "",
             "| base | precision | samples | mean tokens | train samples/s | forward texts/s |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in probe["rows"]:
        lines.append(f"| {r['base']} | {r['precision']} | {r['samples']} | {r['mean_tokens']} "
                     f"| {r['train_samples_per_s']} | {r['forward_texts_per_s']} |")  # fmt: skip
    return lines


def write_results(data: dict[str, Any], path: Path = RESULTS) -> None:
    """Append (or replace) the SST-2 section at the end of ``bench/RESULTS.md``."""
    m, d = data["machine"], data["data"]
    chosen = data.get("chosen")
    ft = next((r for r in data["systems"] if r["system"].startswith("finetune_")), None)
    lines = [SECTION, "",
             f"Measured {data['date']} on {m['model_name']} ({m['cpu_count']} cores shared "
             f"with other jobs, run under the shared CPU lock; flags {m['cpu_flags']}). "
             "Result file: `bench/results/sst2.json`.", "",
             "**Protocol.** GLUE SST-2 from `../shared/datasets/sst2`. Validation is carved "
             f"out of train: {d['validation']:,} distinct training rows of at least 8 words "
             f"(seed 2026); {d['dropped_overlapping_validation']:,} other training rows that are "
             "a part of a validation row, or contain one, are dropped, so the training pool "
             f"({d['pool']:,} phrases) never holds a validation sentence or a piece of it. "
             "Every choice is made on that validation set (TF-IDF `C`, which fine-tuned "
             "encoder is the headline) or on the skill's own internal split of its training "
             "data (the epoch kept, early stopping); dev (872 sentences) is scored once per "
             "system, in this run, and chooses nothing. `test.tsv` is not read.", ""]  # fmt: skip
    if ft:
        cfg = ft["config"]
        lines += [f"Fine-tuning trains on a random subsample of {d['finetune_subsample']:,} pool "
                  "phrases, a size chosen for the shared CPU's time budget (see the probe), not "
                  f"on validation; the skill holds {cfg['val_fraction']:.0%} of it out for early "
                  f"stopping. Settings: epochs {cfg['epochs']} (best kept), patience "
                  f"{cfg['patience']}, learning rate {cfg['learning_rate']:g}, batch "
                  f"{cfg['batch_size']}, max_length {cfg['max_length']}, precision "
                  f"`{cfg['precision']}` (ran as {data['precision_ran']}, for every torch "
                  "system): product defaults otherwise, not tuned. The frozen head "
                  f"and TF-IDF train on {d['head_train']:,} pool phrases.", ""]  # fmt: skip
    sizing = data.get("sizing")
    if sizing:
        lines += [f"The subsample and precision were set by `size_from_probe` from the timing "
                  f"probe below: the faster precision there ({sizing['measured_precision']}), "
                  f"and the size that fits a {sizing['budget_s']:.0f} s budget (estimated "
                  f"{sizing['estimated_fixed_s']} s fixed + {sizing['estimated_s_per_text']} s "
                  f"per training text); the whole run took {data.get('total_seconds', 0):.0f} s.",
                  ""]  # fmt: skip
    lines += _system_rows(data)
    lines += ["", "Train s: the whole `fit` (for the skills: embedding, probe, fine-tuning, "
              "scope statistics); train samples/s: training texts × epochs run over the "
              "fine-tuning loop's seconds, its per-epoch internal validation included; predict "
              "texts/s: `predict()` over the 872 dev sentences, in the run's precision. "
              "Accuracy counts every prediction's label, also the few flagged out of scope "
              "(`scope_alpha` 0.01, the default)."]  # fmt: skip
    grid = data.get("tfidf_grid") or []
    if grid:
        tried = ", ".join(f"C={g['C']:g}: {g['val_accuracy']:.2f}" for g in grid)
        lines += ["", f"TF-IDF + LR validation accuracy by `C` (highest chosen): {tried}."]
        best_c = max(grid, key=lambda g: g["val_accuracy"])["C"]
        if best_c == max(g["C"] for g in grid):
            lines[-1] += (" The chosen `C` is the largest in the grid; larger values were "
                          "not tried, so the baseline may be slightly understated.")  # fmt: skip
    tuned = [r for r in data["systems"] if r["system"].startswith("finetune_")]
    if tuned:
        tried = "; ".join(
            f"{r['system']}: validation {r['val_accuracy']:.2f}, internal split "
            + ", ".join(f"epoch {h['epoch']} {h['val_metric'] * 100:.2f}" for h in r["history"])
            for r in tuned
        )
        lines += ["", f"Fine-tuned encoders, by validation (highest is the headline): {tried}."]
        if any(r["best_epoch"] == r["config"]["epochs"] for r in tuned):
            lines[-1] += (" The best epoch was the last one allowed: more epochs or more data "
                          "(the CPU budget capped both) would likely score higher.")  # fmt: skip
    if chosen:
        verdict = "**met**" if chosen["met"] else "**not met**"
        lines += ["", "| target | result | verdict |", "|---|---|---|",
                  f"| SST-2 dev ≥ {chosen['target']} (DistilBERT's published figure) "
                  f"| {chosen['system']} (chosen on validation): {chosen['dev_accuracy']:.2f} "
                  f"| {verdict} |"]  # fmt: skip
    lines += _probe_rows(data.get("probe"))
    lines += ["", "Command (from the repository root):", "", "```",
              "flock /tmp/slmstack-cpu.lock nice -n 5 env HF_HUB_OFFLINE=1 "
              f"TRANSFORMERS_OFFLINE=1 SLMSTACK_PROGRESS=0 .venv/bin/{data['command']}",
              "```", ""]  # fmt: skip
    replace_section(path, SECTION, "\n".join(lines))
    print(json.dumps({"wrote": str(path), "section": SECTION}))
