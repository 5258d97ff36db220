"""How ``bench/classify.py`` reports: the table per data set, the systems' labels, and its
RESULTS.md section (one block per data set, others kept)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "RESULTS.md"
SECTION = "## Text classification (`bench/classify.py`)"
DATASETS = ("banking77", "clinc150")
BASELINE_C = 10.0


def _table(results: list[dict[str, Any]]) -> str:
    head = (
        "| system | accuracy | macro-F1 | test ECE | training wall s (CPU s) | "
        "p50 latency ms (1 query) | throughput texts/s | peak RSS MB train / serve |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    rows = [
        f"| {r['label']} | {100 * r['accuracy']:.2f} | {100 * r['macro_f1']:.2f} | "
        f"{r['test_ece']:.3f} | {r['train_seconds']:.0f} ({r['train_cpu_seconds']:.0f}) | "
        f"{r['latency_p50_ms']:.1f} | {r['throughput_per_s']:.0f} | "
        f"{r['train_peak_rss_mb']:.0f} / {r['serve_peak_rss_mb']:.0f} |"
        for r in results
    ]
    return head + "\n".join(rows) + "\n"


def _label(system: str, params: dict[str, Any]) -> str:
    if system == "baseline":
        return f"sentence-transformers + LogisticRegression(C={BASELINE_C:g})"
    if system == "head":
        return f"slmstack head ({params['precision']})"
    return (
        f"slmstack finetune ({params['precision']}, lr {params['learning_rate']:g}, "
        f"≤{params['epochs']} epochs, best {params.get('best_epoch', '?')})"
    )


INTRO = (
    "Every system uses the same all-MiniLM-L6-v2 weights and runs in the same invocation "
    "of the benchmark, in its own processes: one trains and saves it, a fresh one loads the "
    "saved artifact and evaluates it, so peak RSS is per system and per phase. Accuracy "
    "and macro-F1 are on the official test split (CLINC150: in-scope intents, trained on "
    "train + val). Training wall time covers loading the base model, encoding, fitting, "
    "calibration; CPU seconds (user + system) are shown beside it because the machine is "
    "shared and wall time grows with its load. Latency: p50 of single-query calls; "
    "throughput: one call over the whole test split. ECE: expected calibration error of "
    "the top label's confidence on the test split (15 bins).\n"
)


def write_results(blocks: dict[str, str], path: Path = RESULTS) -> None:
    """Put one ``### data set`` block per data set into this benchmark's section.

    Blocks of data sets not in ``blocks`` are kept, so data sets can be run separately.
    Other sections of the file are left as they are.
    """
    current = (
        path.read_text("utf-8")
        if path.exists()
        else (
            "# Benchmark results\n\nEach benchmark in `bench/` writes its own section here: "
            "the table it measured and the exact command that reproduces it.\n"
        )
    )
    start = current.find(SECTION)
    end = current.find("\n## ", start + len(SECTION)) if start >= 0 else -1
    body = current[start + len(SECTION) : end if end >= 0 else None] if start >= 0 else ""
    kept: dict[str, str] = {}
    for chunk in body.split("\n### ")[1:]:
        name = chunk.split("\n", 1)[0].strip()
        kept[name] = "### " + chunk.rstrip("\n") + "\n"
    for name, block in blocks.items():
        kept[name] = block
    ordered = [kept[n] for n in DATASETS if n in kept] + [
        b for n, b in kept.items() if n not in DATASETS
    ]
    section = f"{SECTION}\n\n{INTRO}\n" + "\n".join(ordered)
    if start < 0:
        updated = current.rstrip("\n") + "\n\n" + section
    else:
        tail = current[end + 1 :] if end >= 0 else ""
        updated = current[:start] + section + ("\n" + tail if tail else "")
    path.write_text(updated, "utf-8")
