"""RouteLLM benchmark (``bench/routellm.py``): settings, the published figures, the data.

Loads RouteLLM's per-query results (MMLU, GSM8K, MT-Bench) into :class:`Task` and splits
them (random, stratified by outcome; or by whole subjects).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "routellm"
RESULTS_MD = REPO / "bench" / "RESULTS.md"
RESULTS_JSON = REPO / "bench" / "results" / "routellm.json"
SECTION = "## RouteLLM: routing MMLU between a strong and a weak LLM (`bench/routellm.py`)"
STRONG = "gpt-4-1106-preview"
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
SCHEMES = ("weak_wrong", "gain")
TARGETS = (0.5, 0.8)
MAX_LENGTH = 128  # TextClassifier's default window; 21 % of MMLU prompts are longer
# Published, arXiv 2406.18665 v4 Tables 1-3 (GPT-4 strong, Mixtral-8x7B weak), evaluated
# on the whole benchmark with routers trained on Chatbot Arena data (+ augmentation):
# (CPT(50%) in %, APGR). CPT(80%) is not in our reference list.
PUBLISHED = {
    "mmlu": [
        ("random (published)", 50.1, 0.500),
        ("best router, trained with augmented data (published)", 35.4, 0.603),
    ],
    "gsm8k": [
        ("random (published)", 50.0, 0.497),
        ("causal-LLM router, augmented (published)", 33.6, 0.622),
    ],
    "mt_bench": [
        ("random (published)", 49.0, 0.500),
        ("matrix factorisation, augmented (published)", 13.4, 0.802),
    ],
}

Array = NDArray[np.float64]
Index = NDArray[np.int64]
Split = dict[str, Index]  # "train" / "val" / "test" -> question indices
Json = dict[str, Any]


@dataclass
class Task:
    """Per-query quality of both models: correctness (0/1) or a judge score."""

    name: str
    texts: list[str]
    weak: Array
    strong: Array
    group: list[str]  # MMLU subject ("" elsewhere)
    dropped: dict[str, int]

    def outcome(self) -> NDArray[np.int64]:
        """0..3: (weak right, strong right) as two bits, for stratified splits."""
        return (2 * (self.weak > 0) + (self.strong > 0)).astype(np.int64)

    def labels(self, scheme: str, idx: NDArray[np.int64]) -> list[str]:
        """Router training labels of the queries ``idx`` under a labelling scheme."""
        w, s = self.weak[idx] > 0, self.strong[idx] > 0
        need = ~w if scheme == "weak_wrong" else (s & ~w)
        return ["strong" if n else "weak_ok" for n in need]


def _contaminated(path: Path) -> set[str]:
    with path.open(encoding="utf-8") as fh:
        return {json.loads(line)["eval_prompt"] for line in fh if line.strip()}


def _rows_task(name: str, rows: list[tuple[str, bool, bool, str]], bad: set[str]) -> Task:
    seen: set[str] = set()
    kept, n_bad, n_dup = [], 0, 0
    for row in rows:
        if row[0] in bad:
            n_bad += 1
        elif row[0] in seen:
            n_dup += 1
        else:
            seen.add(row[0])
            kept.append(row)
    return Task(
        name,
        [r[0] for r in kept],
        np.array([r[1] for r in kept], float),
        np.array([r[2] for r in kept], float),
        [r[3] for r in kept],
        {"contaminated": n_bad, "duplicate_prompts": n_dup},
    )


def _read_csv(path: Path, group: str) -> list[tuple[str, bool, bool, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return [
            (r["prompt"], r[WEAK] == "True", r[STRONG] == "True", group) for r in csv.DictReader(fh)
        ]


def load_mmlu(root: Path) -> Task:
    """All 57 subjects; subject = file name without ``mmlu_``."""
    rows = []
    for path in sorted((root / "mmlu" / "responses").glob("mmlu_*.csv")):
        rows += _read_csv(path, path.stem.removeprefix("mmlu_"))
    return _rows_task("mmlu", rows, _contaminated(root / "mmlu" / "contaminated_prompts.jsonl"))


def load_gsm8k(root: Path) -> Task:
    """GSM8K test problems with both models' correctness."""
    rows = _read_csv(root / "gsm8k" / "gsm8k_responses.csv", "")
    return _rows_task("gsm8k", rows, _contaminated(root / "gsm8k" / "contaminated_prompts.jsonl"))


def load_mt_bench(root: Path) -> Task:
    """First turns; quality = the mean judge score of a model's answers to both turns."""
    bad = _contaminated(root / "mt_bench" / "contaminated_prompts.jsonl")
    with (root / "mt_bench" / "question.jsonl").open(encoding="utf-8") as fh:
        questions = [json.loads(line) for line in fh if line.strip()]
    scores: dict[tuple[int, str], list[float]] = {}
    with (root / "mt_bench" / "judgements.jsonl").open(encoding="utf-8") as fh:
        for line in filter(str.strip, fh):
            j = json.loads(line)
            scores.setdefault((j["question_id"], j["model"]), []).append(float(j["score"]))
    kept = [q for q in questions if not bad & set(q["turns"])]
    return Task(
        "mt_bench",
        [q["turns"][0] for q in kept],
        np.array([np.mean(scores[q["question_id"], WEAK]) for q in kept]),
        np.array([np.mean(scores[q["question_id"], STRONG]) for q in kept]),
        [q["category"] for q in kept],
        {"contaminated": len(questions) - len(kept)},
    )


def random_split(task: Task, seed: int) -> Split:
    """50 / 10 / 40, stratified by the four (weak, strong) outcomes."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(task.texts))
    rest, test = train_test_split(idx, test_size=0.4, random_state=seed, stratify=task.outcome())
    train, val = train_test_split(
        rest, test_size=1 / 6, random_state=seed, stratify=task.outcome()[rest]
    )
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def subject_split(task: Task, seed: int) -> tuple[Split, dict[str, list[str]]]:
    """Whole subjects, in a seeded order, to test until 40 %, then validation until 10 %."""
    groups = np.array(task.group)
    subjects = sorted(set(task.group))
    order = [subjects[i] for i in np.random.default_rng(seed).permutation(len(subjects))]
    part: dict[str, list[str]] = {"test": [], "val": [], "train": []}
    n, filled = len(groups), {"test": 0, "val": 0}
    for s in order:
        size = int((groups == s).sum())
        name = "test" if filled["test"] < 0.4 * n else "val" if filled["val"] < 0.1 * n else "train"
        part[name].append(s)
        if name != "train":
            filled[name] += size
    split = {k: np.flatnonzero(np.isin(groups, v)) for k, v in part.items()}
    return split, {k: sorted(v) for k, v in part.items()}
