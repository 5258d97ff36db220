"""Peak memory of 1 against 10 ``head`` skills on one base (MiniLM), sharing it or not.

Method: ten ``TextClassifier(strategy="head")`` skills are trained on ten disjoint slices
of BANKING77 (7 intents each, 40 training texts per intent) and saved. Then, for each
setting, a fresh Python process loads the skills with ``slmstack.load`` and classifies 64
BANKING77 test texts with each, and reports its peak resident set size (``VmHWM`` of
``/proc/self/status``) and its peak after the imports (torch, transformers,
scikit-learn, slmstack), before any skill. ``VmHWM`` rather than ``ru_maxrss``: Linux
carries ``ru_maxrss`` over ``fork`` and ``exec``, so a child started by this (larger)
process would report the parent's peak; ``VmHWM`` belongs to the new address space.
Settings:

* ``1 shared``: one skill;
* ``10 shared``: ten skills, sharing MiniLM through ``slmstack.models.shared``;
* ``10 private``: ten skills loaded inside ``private_encoders()``, one MiniLM each (what
  every skill cost before sharing).

Each setting runs ``--repeats`` times, interleaved, in new processes; the median is
reported. The target of issue 13 is peak(10 shared) <= 1.3 x peak(1 shared).

Run (holding the shared CPU lock)::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 SLMSTACK_PROGRESS=0 \
        flock /tmp/slmstack-cpu.lock .venv/bin/python bench/shared_base.py --write-results
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

from _machine import machine as cpu_machine

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "banking77"
SETTINGS = (("1 shared", 1, False), ("10 shared", 10, False), ("10 private", 10, True))
TARGET = 1.3


def machine() -> dict[str, Any]:
    """The CPU (see :mod:`_machine`), with torch's version and thread count."""
    import torch

    return {**cpu_machine(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}  # fmt: skip


def read_split(split: str) -> dict[str, list[str]]:
    by_label: dict[str, list[str]] = defaultdict(list)
    with open(DATA / f"{split}.csv", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            by_label[row["category"]].append(row["text"])
    return by_label


def prepare(folder: Path, n_skills: int, per_label: int) -> list[Path]:
    """Train and save ``n_skills`` head classifiers on disjoint 7-intent slices."""
    from slmstack import DataWarning, Example, TextClassifier

    train = read_split("train")
    labels = sorted(train)
    paths = []
    for i in range(n_skills):
        mine = labels[i * 7 : i * 7 + 7]
        data = [Example(t, lab) for lab in mine for t in train[lab][:per_label]]
        path = folder / f"skill{i}"
        with warnings.catch_warnings():  # 28 validation texts: the scope warning is expected
            warnings.simplefilter("ignore", DataWarning)
            TextClassifier(strategy="head", seed=i).fit(data).save(path)
        paths.append(path)
    return paths


def peak_mb() -> float:
    """Peak RSS of this process's address space (``VmHWM``), in MB."""
    found = re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    if found is None:
        raise RuntimeError("no VmHWM in /proc/self/status; this benchmark needs Linux")
    return int(found.group(1)) / 1024


def child(paths: list[str], private: bool) -> None:
    """Load the skills, classify test texts with each, print peak and import-time RSS."""
    import sklearn.linear_model  # noqa: F401  (imported by the skills; counted as baseline)
    import torch  # noqa: F401
    import transformers  # noqa: F401

    import slmstack
    from slmstack.models.shared import private_encoders

    imports = peak_mb()
    test = [t for texts in read_split("test").values() for t in texts[:1]][:64]
    start = time.perf_counter()
    if private:
        with private_encoders():
            skills = [slmstack.load(p) for p in paths]
    else:
        skills = [slmstack.load(p) for p in paths]
    load_s = time.perf_counter() - start
    for skill in skills:
        skill.predict(test)
    peak = peak_mb()
    encoders = {id(s.net_.encoder) for s in skills}  # type: ignore[attr-defined]
    print(json.dumps({"peak_mb": peak, "imports_mb": imports,
                      "load_s": load_s, "distinct_encoders": len(encoders)}))  # fmt: skip


def measure(paths: list[Path], repeats: int) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "SLMSTACK_PROGRESS": "0"}  # fmt: skip
    for r in range(repeats):
        for name, n, private in SETTINGS:
            cmd = [sys.executable, __file__, "--child", *(["--private"] if private else []),
                   *map(str, paths[:n])]  # fmt: skip
            load0 = os.getloadavg()[0]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            run = json.loads(out.stdout.strip().splitlines()[-1])
            run["load1"] = [load0, os.getloadavg()[0]]
            runs[name].append(run)
            print(f"[{r + 1}/{repeats}] {name}: peak {run['peak_mb']:.0f} MB "
                  f"(imports {run['imports_mb']:.0f} MB), {run['distinct_encoders']} "
                  f"encoder(s), load {run['load_s']:.1f} s", flush=True)  # fmt: skip
    return runs


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    out = {}
    for name, rs in runs.items():
        peak = statistics.median(r["peak_mb"] for r in rs)
        imports = statistics.median(r["imports_mb"] for r in rs)
        out[name] = {"peak_mb": peak, "imports_mb": imports, "skills_mb": peak - imports,
                     "load_s": statistics.median(r["load_s"] for r in rs),
                     "distinct_encoders": rs[0]["distinct_encoders"]}  # fmt: skip
    one = out["1 shared"]["peak_mb"]
    for row in out.values():
        row["ratio_to_1"] = row["peak_mb"] / one
    return out


def markdown(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["summary"]
    loads = [x for rs in result["runs"].values() for r in rs for x in r["load1"]]
    rows = "\n".join(
        f"| {name} | {r['distinct_encoders']} | {r['peak_mb']:.0f} | {r['imports_mb']:.0f} | "
        f"{r['skills_mb']:.0f} | {r['ratio_to_1']:.2f}x | {r['load_s']:.1f} |"
        for name, r in s.items()
    )
    ratio = s["10 shared"]["ratio_to_1"]
    return f"""
## Ten skills on one base in memory (`bench/shared_base.py`)

Measured {result["when"]}: {m["cpu_count"]} CPU cores, {m["model_name"]} ({m["cpu_flags"]}), \
torch {m["torch"]} with {m["torch_threads"]} threads; 1-minute load average \
{min(loads):.1f}–{max(loads):.1f} (the machine is shared; memory does not depend on it). \
Ten `TextClassifier(strategy="head")` skills on MiniLM, each trained on its own 7 BANKING77 \
intents; a fresh process per run loads them with `slmstack.load` and classifies 64 test \
texts with each; peak RSS is `VmHWM` (`ru_maxrss` would report the parent's peak: Linux \
keeps it across fork and exec), "after imports" the peak after importing torch, \
transformers, scikit-learn and slmstack, before any skill. Median of {result["repeats"]} \
interleaved runs per setting. "10 private" loads the same skills inside \
`slmstack.models.shared.private_encoders()`, one MiniLM each, as before sharing.

| setting | encoders | peak RSS MB | after imports MB | peak − imports MB | ÷ 1 skill | load s |
|---|---|---|---|---|---|---|
{rows}

Target of issue 13, memory of 10 skills on one base ≤ 1.3× one skill: **{ratio:.2f}×**, \
{"met" if ratio <= TARGET else "not met"}. Most of a single skill's peak is the libraries \
(the "after imports" column), which every process pays once; the skills' own share grows \
from one MiniLM plus one head to one MiniLM plus ten heads and scope models.

Command (from the repository root, holding the shared CPU lock):

```
{result["command"]}
```
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--per-label", type=int, default=40)
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/shared_base.json")
    parser.add_argument("--write-results", action="store_true",
                        help="append the section to bench/RESULTS.md")  # fmt: skip
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--private", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.paths, args.private)
        return
    command = ("HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 SLMSTACK_PROGRESS=0 flock "
               "/tmp/slmstack-cpu.lock .venv/bin/python bench/shared_base.py "
               + " ".join(sys.argv[1:]))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        paths = prepare(Path(tmp), 10, args.per_label)
        runs = measure(paths, args.repeats)
    result = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": command,
              "repeats": args.repeats, "per_label": args.per_label, "machine": machine(),
              "load_avg_end": os.getloadavg(), "target": TARGET, "runs": runs,
              "summary": summarise(runs)}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    section = markdown(result)
    print(section)
    if args.write_results:
        with open(ROOT / "bench/RESULTS.md", "a", encoding="utf-8") as fh:  # re-read by append
            fh.write(section)


if __name__ == "__main__":
    main()
