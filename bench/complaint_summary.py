# ruff: noqa: E501  (the RESULTS.md paragraphs are written as single lines)
"""Support-desk complaint summaries: the desk's LoRA-tuned SmolLM2 against prompted models.

Data, written for this project (no dataset text): ``examples/support-desk/data/
complaint-summaries.jsonl`` (the training rows, which the support desk trains on) and
``complaint-summaries-val.jsonl`` (30 more complaints written the same way, held out:
each system is scored on them once, and they make no choice). The LoRA run makes its
one choice, the epoch, on a seeded 10% of the training rows (``val_fraction``); its
other settings are the support desk's, fixed in ``workflow.yaml`` before this run.

Systems, on the same 30 complaints (plain text, as the desk now passes them):

* lead: the complaint's first sentence (:func:`split_sentences`);
* prompted SmolLM2-135M and Qwen2.5-Coder-0.5B: ``Summarizer`` on llama.cpp with the
  support desk's old settings (``max_sentences=2`` and its "The customer ..." instruction);
* LoRA: the support desk's own summarizer, its ``workflow.yaml`` spec (``tune: lora`` on
  the transformers runtime) trained and saved by :func:`resolve_skills` as the workflow
  loader does, into a fresh folder (timed: a first run's cost); a full run then copies it
  into ``examples/support-desk/.slmstack-cache``, so the demo's next run loads it.

Measures: ROUGE-1/2/L (:func:`rouge_scores`; an abstention scores as an empty summary);
copied: outputs that repeat their input by :func:`check_copy` at the skill's limit (0.8);
abstentions by reason; "The customer" format; identifiers (order numbers, £ amounts) of
the complaint kept in the summary, and ones the summary invents; seconds per summary
(2 threads on both runtimes); training seconds.

Run (it takes the CPU lock itself; do not wrap it in flock, or pass ``--lock-held``)::

    nice -n 5 .venv/bin/python bench/complaint_summary.py --write-results > /tmp/bench_complaint.log 2>&1

``--render`` rewrites the RESULTS.md section from the result file alone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SLMSTACK_PROGRESS", "0")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_lock, machine, replace_section

REPO = Path(__file__).resolve().parents[1]
DESK = REPO / "examples" / "support-desk"
VAL = DESK / "data" / "complaint-summaries-val.jsonl"
JSON_OUT = REPO / "bench" / "results" / "complaint_summary.json"
RESULTS_MD = REPO / "bench" / "RESULTS.md"
TITLE = "## Support-desk complaint summaries: LoRA-tuned SmolLM2 against prompted models (`bench/complaint_summary.py`)"
AFTER = "## DialogSum: LoRA summariser against prompted models"
_IDS = re.compile(r"\bORD-\d+|£\d+(?:\.\d\d)?")
THREADS = 2
KIND = "slmstack.Summarizer.v1"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def desk_spec() -> tuple[dict[str, Any], Path]:
    """The support desk's summarizer params and training file, from its workflow.yaml."""
    import yaml

    spec = yaml.safe_load((DESK / "workflow.yaml").read_text())["skills"]["summarizer"]
    assert spec["kind"] == KIND, spec
    return dict(spec["params"]), DESK / spec["train"]


def identifiers(text: str) -> set[str]:
    return set(_IDS.findall(text))


def score(name: str, outputs: list[str], preds: list[Any] | None, rows: list[dict],
          seconds: float) -> dict[str, Any]:  # fmt: skip
    """ROUGE, copies, abstentions, format and identifiers of ``outputs`` on ``rows``."""
    from slmstack.evaluation.summaries import rouge_scores
    from slmstack.skills._copying import check_copy

    texts, refs = [r["text"] for r in rows], [r["summary"] for r in rows]
    abstained: dict[str, int] = {}
    for p in preds or []:
        if p.abstained:
            abstained[p.abstained] = abstained.get(p.abstained, 0) + 1
    said = [o for o in outputs if o]
    ids_in = [identifiers(t) for t in texts]
    kept = sum(len(i & identifiers(o)) for i, o in zip(ids_in, outputs, strict=True))
    invented = sum(len(identifiers(o) - i) for i, o in zip(ids_in, outputs, strict=True))
    return {
        "system": name, **rouge_scores(outputs, refs),
        "copied": sum(check_copy(o, t, limit=0.8).copied for o, t in zip(outputs, texts, strict=True) if o),
        "abstained": sum(abstained.values()), "abstained_by_reason": abstained,
        "retried": sum(1 for p in preds or [] if (p.data or {}).get("attempts") == 2),
        "the_customer": sum(o.startswith("The customer") for o in said),
        "ids_kept": kept, "ids_total": sum(map(len, ids_in)), "ids_invented": invented,
        "s_per_summary": seconds / len(rows), "outputs": outputs,
    }  # fmt: skip


def run_skill(name: str, skill: Any, rows: list[dict]) -> dict[str, Any]:
    preds, start = [], time.perf_counter()
    for i, r in enumerate(rows):
        preds.append(skill.predict([r["text"]])[0])
        if i % 10 == 9 or i == len(rows) - 1:
            log(f"{name} after {i + 1}: {preds[-1].text!r} {preds[-1].abstained or ''}")
    seconds = time.perf_counter() - start
    return score(name, [p.text or "" for p in preds], preds, rows, seconds)


def run_prompted(model: str, params: dict[str, Any], rows: list[dict]) -> dict[str, Any]:
    from slmstack import Summarizer

    skill = Summarizer(model=model, max_sentences=params["max_sentences"],
                       instructions=params["instructions"],
                       backend_options={"n_threads": THREADS}).fit([])  # fmt: skip
    out = run_skill(f"{model} prompted (llama.cpp)", skill, rows)
    return {**out, "runtime": "llama_cpp", "threads": THREADS}


def run_lora(params: dict[str, Any], train: Path, rows: list[dict], max_steps: int | None,
             desk: Path = DESK, label: str = "support desk") -> dict[str, Any]:  # fmt: skip
    """Train the desk's summarizer as its workflow loader does (fit, then save), and score it.

    The skill is trained into a fresh cache folder, so the time is a first run's; a real
    run then copies it into the desk's own cache, where ``run.py`` finds it.
    """
    import shutil
    import tempfile

    import torch

    from slmstack.workflows.skillspec import SkillSpec, resolve_skills

    torch.set_num_threads(THREADS)
    if max_steps is not None:  # a smoke run only; never written as a result
        params = {**params, "lora": {**(params.get("lora") or {}), "max_steps": max_steps}}
    spec = SkillSpec(kind=KIND, params=params, train=str(train.relative_to(desk)))
    with tempfile.TemporaryDirectory(prefix="complaint-summary-") as tmp:
        start = time.perf_counter()
        skill: Any = resolve_skills({"summarizer": spec}, base=desk, cache=Path(tmp))["summarizer"]
        train_s = time.perf_counter() - start
        (folder,) = Path(tmp).iterdir()
        cached = desk / ".slmstack-cache" / folder.name
        if max_steps is None and not cached.exists():
            shutil.copytree(folder, cached)
            log(f"copied the trained skill to {cached}")
    n_rows, m = skill.provenance_.rows, skill.provenance_.metrics
    log(f"LoRA trained and saved in {train_s:.0f} s on {n_rows} rows: {m}")
    name = f"{params['model']} + LoRA ({label}, transformers)"
    out = run_skill(name, skill, rows)
    return {**out, "runtime": "transformers", "threads": THREADS, "params": params,
            "train_rows": n_rows, "train_seconds": train_s, "training": m}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[1])
    p.add_argument("--models", nargs="*", default=["smollm2", "qwen2.5-0.5b"])
    p.add_argument("--limit", type=int, default=None, help="first N held-out rows (smoke)")
    p.add_argument("--lora-max-steps", type=int, default=None, help="smoke runs only")
    p.add_argument("--lock-held", action="store_true",
                   help="the caller holds the CPU lock already (flock ... this script)")  # fmt: skip
    p.add_argument("--render", action="store_true",
                   help="only rewrite the RESULTS.md section from the result file")  # fmt: skip
    p.add_argument("--write-results", action="store_true",
                   help=f"write {JSON_OUT.relative_to(REPO)} and the RESULTS.md section")  # fmt: skip
    args = p.parse_args()
    if args.render:
        replace_section(RESULTS_MD, TITLE, render(json.loads(JSON_OUT.read_text())), after=AFTER)
        return
    if args.write_results and (args.limit or args.lora_max_steps):
        sys.exit("--limit and --lora-max-steps are for smoke runs; they cannot --write-results")
    from slmstack.errors import ModelError
    from slmstack.models import resolve
    from slmstack.skills.summary_text import split_sentences

    rows = [json.loads(x) for x in VAL.read_text().splitlines() if x.strip()][: args.limit]
    params, train = desk_spec()
    report: dict[str, Any] = {
        "benchmark": "bench/complaint_summary.py",
        "command": " ".join(["bench/complaint_summary.py", *sys.argv[1:]]),
        "machine": machine(), "data": {"train": str(train.relative_to(REPO)),
                                       "held_out": str(VAL.relative_to(REPO)), "rows": len(rows)},
        "references": [r["summary"] for r in rows], "systems": {},
    }  # fmt: skip
    with nullcontext(0.0) if args.lock_held else cpu_lock() as waited:
        log(f"lock after {waited:.0f} s")
        report["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        start = time.perf_counter()
        lead = [split_sentences(r["text"])[0] for r in rows]
        report["systems"]["lead"] = score("lead: first sentence", lead, None, rows,
                                          time.perf_counter() - start)  # fmt: skip
        report["systems"]["lora"] = run_lora(params, train, rows, args.lora_max_steps)
        save(report, args.write_results)
        for model in args.models:
            try:
                resolve(model)
            except ModelError as exc:  # reported; the run goes on
                log(f"skipping {model}: not installed ({exc})")
                report["systems"][model] = {"system": f"{model} prompted", "skipped": str(exc)}
                continue
            report["systems"][model] = run_prompted(model, params, rows)
            save(report, args.write_results)
    print_table(report)
    if args.write_results:
        replace_section(RESULTS_MD, TITLE, render(report), after=AFTER)
        log(f"wrote {JSON_OUT} and the RESULTS.md section")


def save(report: dict[str, Any], write: bool) -> None:
    """Write the result file as it grows, so a run cut short keeps what it measured."""
    if write:
        JSON_OUT.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")


def table(report: dict[str, Any]) -> list[str]:
    out = ["| system | ROUGE-1 | ROUGE-2 | ROUGE-L | copied | abstained | \"The customer …\" | ids kept | ids invented | s/summary |",
           "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in report["systems"].values():
        if "skipped" in s:
            out.append(f"| {s['system']} | not installed | | | | | | | | |")
            continue
        n = report["data"]["rows"]
        out.append(f"| {s['system']} | {s['rouge1']:.2f} | {s['rouge2']:.2f} | {s['rougeL']:.2f} | "
                   f"{s['copied']}/{n} | {s['abstained']}/{n} | {s['the_customer']}/{n} | "
                   f"{s['ids_kept']}/{s['ids_total']} | {s['ids_invented']} | {s['s_per_summary']:.2f} |")  # fmt: skip
    return out


def print_table(report: dict[str, Any]) -> None:
    print("\n".join(table(report)))
    for s in report["systems"].values():
        if "outputs" in s:
            print(f"{s['system']}: {s['outputs'][0]!r}")


def verdict(r: dict[str, Any]) -> str:
    """One sentence: how the LoRA summariser compares with the best other system."""
    done = {k: v for k, v in r["systems"].items() if "rougeL" in v}
    lora = done.pop("lora")
    best = max(done.values(), key=lambda v: v["rougeL"])
    prompted = [v for k, v in done.items() if k != "lead"]
    best_p = max(prompted, key=lambda v: v["rougeL"]) if prompted else None
    word = "above" if lora["rougeL"] > best["rougeL"] else "not above"
    text = (
        f"ROUGE-L: the LoRA summariser scores {lora['rougeL']:.2f}, {word} the best other system "
        f"({best['system']}, {best['rougeL']:.2f})"
    )
    if best_p is not None:
        text += f"; the best prompted model scores {best_p['rougeL']:.2f}"
    return text + f", and the lead sentence {r['systems']['lead']['rougeL']:.2f}."


def render(r: dict[str, Any]) -> str:
    """The RESULTS.md section, from the report."""
    m, lora = r["machine"], r["systems"]["lora"]
    t = lora["training"]
    val_curve = f"{t.get('lora_val_loss_before', float('nan')):.3f} → {t.get('lora_val_loss', float('nan')):.3f}"
    examples = [(name, s["outputs"][0]) for name, s in r["systems"].items() if "outputs" in s]
    return "\n".join([
        TITLE, "",
        "```bash",
        (f"flock /tmp/slmstack-cpu.lock nice -n 5 .venv/bin/python {r['command']} > /tmp/bench_complaint.log 2>&1"
         if "--lock-held" in r["command"] else
         f"nice -n 5 .venv/bin/python {r['command']} > /tmp/bench_complaint.log 2>&1  # takes the CPU lock itself"),
        "```", "",
        f"Measured {r['date']} on {m['model_name']} ({m['cpu_count']} vCPUs, shared; flags {m['cpu_flags']}), alone under the CPU lock, niced; {THREADS} threads on both runtimes. Result file: `bench/results/complaint_summary.json` (with every output).",
        "",
        f"Data, written for this project (DialogSum is CC BY-NC-SA, evaluation only, so the desk ships nothing trained on it): `{r['data']['train']}` ({lora['train_rows']} complaints to Brightlane Home with a 1-2 sentence summary for an agent) trains the adapter; `{r['data']['held_out']}` ({r['data']['rows']} more, written the same way) is **held out**: scored once per system, used for no choice. The one choice, the LoRA epoch, was made by `train_lora` on a seeded 10% of the training rows (token loss {val_curve}, epoch {t['lora_best_epoch']:.0f} of {lora['params']['lora'].get('epochs', 2)}); the other settings are the support desk's (`workflow.yaml`: `{json.dumps(lora['params']['lora'])}`), fixed before this run and not searched. The prompted models keep the desk's old settings (`max_sentences=2`, the same \"The customer ...\" instruction); every system gets the complaint as plain text.",
        "",
        *table(r),
        "",
        f"LoRA training (the support desk's first run: `Summarizer(tune=\"lora\").fit` and save, as the workflow loader does): {lora['train_seconds']:.0f} s wall on {m['cpu_count']} vCPUs, of which {t['lora_seconds']:.0f} s in `train_lora` ({t['lora_steps']:.0f} steps, training loss {t['lora_first_loss']:.3f} → {t['lora_last_loss']:.3f}, {t['lora_pairs_cut']:.0f} pairs cut).",
        "",
        "Columns: *copied*: outputs that repeat their input (`check_copy`, the skill's 0.8 limit; the skills abstain on a copy after one stricter retry, so theirs show under *abstained*); *ids kept*: order numbers and £ amounts of the complaints found in the summaries; *ids invented*: ones in a summary but not in its complaint. ROUGE counts an abstention as an empty summary.",
        "",
        verdict(r),
        "",
        "Outputs on the first held-out complaint (reference: " + json.dumps(r["references"][0], ensure_ascii=False) + "):",
        "",
        *[f"- {name}: {json.dumps(o, ensure_ascii=False)}" for name, o in examples],
        "",
    ])  # fmt: skip


if __name__ == "__main__":
    main()
