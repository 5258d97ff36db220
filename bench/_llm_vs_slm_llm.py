"""``bench/llm_vs_slm.py``: the LLM (served by llama.cpp, niced, no lock) and its answers."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _llm_process import cpu_seconds, free_port, stop, wait_ready
from _llm_vs_slm_common import (
    MODEL,
    PROMPTS,
    lock_held_by_other,
    pct,
    prompt_params,
)
from _machine import cpu_lock


# ---------------------------------------------------------------- the LLM (niced, no lock)
def llama_timings(log: Path, offset: int) -> dict[str, float | None]:
    """llama.cpp's own timing of the request logged after ``offset`` (its compute alone)."""
    with log.open("rb") as fh:
        fh.seek(offset)
        text = fh.read().decode("utf-8", errors="replace")
    out: dict[str, float | None] = {}
    for key, pattern in (("llama_prompt_ms", r"prompt eval time =\s*([\d.]+) ms"),
                         ("llama_eval_ms", r"print:\s+eval time =\s*([\d.]+) ms"),
                         ("llama_total_ms", r"total time =\s*([\d.]+) ms")):  # fmt: skip
        found = re.findall(pattern, text)
        out[key] = float(found[-1]) if len(found) == 1 else None
    return out


class Answers:
    """The LLM's answers, one JSON line each, appended as they come (the checkpoint)."""

    def __init__(self, path: Path):
        self.path = path
        self.done: dict[str, dict[int, dict[str, Any]]] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    rec = json.loads(line)
                    self.done.setdefault(rec["key"], {})[rec["i"]] = rec

    def add(self, rec: dict[str, Any]) -> None:
        self.done.setdefault(rec["key"], {})[rec["i"]] = rec
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


class LLMRun:
    """The served model, one fitted LLMClassifier, and the checkpointed answers."""

    def __init__(self, pool: list[tuple[str, str]], answers: Answers):
        self.pool = pool
        self.answers = answers
        self.clf: Any = None
        self.server: subprocess.Popen[bytes] | None = None
        self.log: Any = None
        self.fit_s = 0.0
        self.used: list[dict[str, Any]] = []  # every answer the report rests on
        self.log_path = answers.path.parent / "server.log"  # the server's log, beside them

    def start(self) -> None:
        from slmstack.models import resolve
        from slmstack.skills.llm_classifier import LLMClassifier
        from slmstack.types import Example

        gguf = resolve(MODEL).weights
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        self.log = self.log_path.open("ab")
        cmd = ["nice", "-n", "10", sys.executable, "-m", "llama_cpp.server", "--model",
               str(gguf), "--model_alias", MODEL, "--n_ctx", "4096", "--n_threads", "2",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        print(" ".join(cmd), flush=True)
        self.server = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        wait_ready(url + "/v1", self.server, self.log_path)
        options = {"base_url": url + "/v1", "api_key_env": None, "json_format": "json_object",
                   "timeout_s": 1800.0, "retries": 1}  # fmt: skip
        start = time.perf_counter()
        self.clf = LLMClassifier(model=MODEL, runtime="openai", backend_options=options,
                                 k=16, retriever="embedding",
                                 confidence_method="greedy")  # fmt: skip
        self.clf.fit([Example(t, lab) for t, lab in self.pool])
        self.fit_s = time.perf_counter() - start
        print(f"LLMClassifier fitted on {len(self.pool)} demonstrations in {self.fit_s:.0f} s",
              flush=True)  # fmt: skip

    def stop(self) -> None:
        if self.server is not None:
            stop(self.server)
            self.server = None
        if self.log is not None:
            self.log.close()

    def score(self, split: str, variant: str, k: int, items: list[tuple[int, str, str]],
              *, locked: bool = False) -> list[dict[str, Any]]:  # fmt: skip
        """Answers for ``items`` (index, text, gold) with this prompt; asks only the missing.

        ``locked``: hold the shared CPU lock while asking (the short latency check).
        """
        key = f"{split}|{variant}|k{k}"
        done = self.answers.done.get(key, {})
        todo = [it for it in items if it[0] not in done]
        if todo:
            if self.clf is None:
                self.start()
            with cpu_lock() if locked else nullcontext():
                wanted = {i for i, _, _ in items}  # answers of other runs' samples do not count
                self._ask(key, variant, k, todo, len(items),
                          {i: r for i, r in done.items() if i in wanted})  # fmt: skip
            done = self.answers.done[key]
        recs = [done[i] for i, _, _ in items]
        self.used += recs
        return recs

    def _ask(self, key: str, variant: str, k: int, todo: list[tuple[int, str, str]],
             total: int, done: dict[int, dict[str, Any]]) -> None:  # fmt: skip
        assert self.server is not None
        self.clf.set_params(k=k, **prompt_params(variant, self.clf.classes_))
        self.clf.predict([self.pool[0][0]])  # warm-up: evaluates the new system prompt
        right = sum(r["label"] == r["gold"] for r in done.values())
        for n, (i, text, gold) in enumerate(todo, len(done) + 1):
            cpu0 = cpu_seconds(self.server.pid)
            held = lock_held_by_other()
            log_at = self.log_path.stat().st_size
            start = time.perf_counter()
            p = self.clf.predict([text])[0]
            wall = time.perf_counter() - start
            rec = {"key": key, "i": i, "gold": gold, "label": p.label,
                   "abstained": p.abstained, "confidence": p.confidence,
                   "method": p.data.get("confidence_method"),
                   "tokens_in": p.usage.input_tokens, "tokens_out": p.usage.output_tokens,
                   "wall_s": wall, "skill_ms": p.usage.latency_ms,
                   "server_cpu_s": cpu_seconds(self.server.pid) - cpu0,
                   **llama_timings(self.log_path, log_at),
                   "load1": os.getloadavg()[0], "lock_held": held or lock_held_by_other(),
                   "at": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
            self.answers.add(rec)
            right += p.label == gold
            print(f"[{key}] {n}/{total} acc {right / n:.3f}  {gold} -> {p.label}  "
                  f"{wall:.1f} s  in {p.usage.input_tokens}  load {rec['load1']:.1f}"
                  f"{'  (lock held)' if rec['lock_held'] else ''}", flush=True)  # fmt: skip

    def nearest_labels(self, texts: list[str]) -> list[str]:
        """The label of each text's top demonstration (the retriever alone, as a classifier).

        The fitted classifier's pool when there is one; else the same pool built directly
        (the same ShotPool the skill builds), so a run whose answers are all cached starts
        no server.
        """
        pool = self.clf.pool_ if self.clf is not None else None
        if pool is None:
            from slmstack.skills._llm_shots import ShotPool

            pool = ShotPool("embedding", "minilm")
            pool.build(self.pool, index=True)
        return [pool.answers[ix[0]] for ix in pool.nearest(texts, 1)]


def summary(recs: list[dict[str, Any]]) -> dict[str, Any]:
    wall = [r["wall_s"] for r in recs]
    return {
        "n": len(recs),
        "accuracy": sum(r["label"] == r["gold"] for r in recs) / len(recs),
        "invalid": sum(r["label"] is None for r in recs),
        "p50_s": pct(wall, 50), "p95_s": pct(wall, 95), "mean_s": statistics.fmean(wall),
        "tokens_in_mean": statistics.fmean(r["tokens_in"] for r in recs),
        "tokens_out_mean": statistics.fmean(r["tokens_out"] for r in recs),
    }  # fmt: skip


def pick(scores: dict[str, dict[str, Any]]) -> str:
    """Best validation accuracy; ties go to the shorter prompt (cheaper, faster)."""
    return max(scores, key=lambda c: (scores[c]["accuracy"], -scores[c]["tokens_in_mean"]))


def llm_phase(run: LLMRun, val: list[tuple[int, str, str]], test: list[tuple[int, str, str]],
              ks: list[int], n_quiet: int) -> dict[str, Any]:  # fmt: skip
    base_k = 8 if 8 in ks else ks[0]
    stage1 = {f"{v}|k{base_k}": summary(run.score("val", v, base_k, val)) for v in PROMPTS}
    variant = pick(stage1).split("|")[0]
    stage2 = {f"{variant}|k{k}": summary(run.score("val", variant, k, val))
              for k in ks if k != base_k}  # fmt: skip
    scores = {**stage1, **stage2}
    chosen = pick({c: s for c, s in scores.items() if c.startswith(variant + "|")})
    k = int(chosen.split("|k")[1])
    print(f"chosen on validation: prompt {variant}, k {k}", flush=True)
    recs = run.score("test", variant, k, test)
    # The same first test queries again, holding the shared CPU lock: the LLM's latency
    # without other jobs' load, comparable with the SLMs' (also measured under the lock).
    quiet = run.score("quiet", variant, k, test[:n_quiet], locked=True)
    return {"validation": scores, "chosen": {"prompt": variant, "k": k},
            "test_records": recs, "quiet_records": quiet, "fit_s": run.fit_s,
            "answered": [min(r["at"] for r in run.used), max(r["at"] for r in run.used)],
            "embedding_1nn_test": run.nearest_labels([t for _, t, _ in test]),
            "embedding_1nn_val": statistics.fmean(
                p == g for p, (_, _, g) in zip(run.nearest_labels([t for _, t, _ in val]), val,
                                               strict=True))}  # fmt: skip
