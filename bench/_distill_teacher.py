"""``bench/distill.py``: the LLM teacher (llama.cpp, niced), its cached labels and cost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _distill_common import (
    MACHINE,
)
from _llm_process import cpu_seconds, free_port, stop, wait_ready


# ---------------------------------------------------------------- the teacher (niced)
class Server:
    """``python -m llama_cpp.server`` for one model, niced to 10, on a free loopback port."""

    def __init__(self, model: str, out: Path):
        from slmstack.models import resolve

        self.model, self.out = model, out
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/v1"
        self.log = (out / "server.log").open("ab")
        # Niced to 10 in all, whatever this process's own nice value is now.
        cmd = ["nice", "-n", str(max(0, 10 - os.nice(0))), sys.executable, "-m",
               "llama_cpp.server", "--model", str(resolve(model).weights), "--model_alias",
               model, "--n_ctx", "4096", "--n_threads", "2", "--host", "127.0.0.1",
               "--port", str(port)]  # fmt: skip
        print(" ".join(cmd), flush=True)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        wait_ready(self.url, self.proc, out / "server.log")

    def stop(self) -> None:
        stop(self.proc)
        self.log.close()


class Teacher:
    """The fitted LLMClassifier, its cache identity per ``k``, and the costing."""

    def __init__(self, model: str, seed_examples: list[Any], out: Path):
        from slmstack.distill import TeacherCache
        from slmstack.skills.llm_classifier import LLMClassifier
        from slmstack.workflows.metering import Meter

        self.model, self.out, self.server = model, out, None
        self.ready_at: float | None = None  # when our server first answered: the budget's start
        self.seed_examples = seed_examples
        self.cache = TeacherCache(out / "teacher-labels.jsonl")
        # The URL is set when a server starts; until then nothing is asked (all cached).
        self.options = {"base_url": "http://127.0.0.1:9/v1", "api_key_env": None,
                        "json_format": "json_object", "timeout_s": 600.0, "retries": 1}  # fmt: skip
        start = time.perf_counter()
        self.clf = LLMClassifier(model=model, runtime="openai", backend_options=self.options,
                                 k=8, retriever="embedding",
                                 confidence_method="greedy")  # fmt: skip
        self.clf.fit(seed_examples)
        self.fit_s = time.perf_counter() - start
        # The served model is priced by its wall time on the machine, as a ledger row is.
        self.prices = {
            "models": {model: {"machine": MACHINE, "source": "served locally by llama_cpp.server"}}
        }
        self.meter = Meter("distill-bench", skills={"teacher": self.clf}, backends={},
                           prices=self.prices)  # fmt: skip
        self.log_path = out / "label-log.jsonl"

    def identity(self, k: int) -> str:
        """Teacher identity for the cache: kind, params (not the port) and the seed pool."""
        from slmstack.distill import teacher_id

        params = self.clf.get_params() | {"k": k}
        params["backend_options"] = {**params["backend_options"], "base_url": "local server"}
        params["demonstrations_sha256"] = self.clf.provenance_.data_sha256
        return teacher_id(self.clf.skill_name, params)

    def missing(self, k: int, texts: list[str]) -> int:
        """How many of ``texts`` have no cached label from the teacher with ``k``."""
        from slmstack.distill import text_key

        identity = self.identity(k)
        return sum(self.cache.get(text_key(identity, t)) is None for t in dict.fromkeys(texts))

    def cost_of(self, p: Any, seconds: float) -> int:
        return self.meter.skill_cost("teacher", p.usage.input_tokens, p.usage.output_tokens,
                                     seconds)  # fmt: skip

    def label(self, what: str, k: int, texts: list[str], gold: list[str],
              batch: int) -> list[Any]:  # fmt: skip
        """Teacher labels of ``texts`` (cached ones reused), bought ``batch`` at a time."""
        from slmstack.distill import label_with_teacher, text_key

        identity = self.identity(k)
        todo = [t for t in dict.fromkeys(texts) if self.cache.get(text_key(identity, t)) is None]
        if todo:
            self.ensure_server()
            self.clf.set_params(k=k)
            print(f"[{what} k={k}] {len(texts) - len(todo)} cached, {len(todo)} to label",
                  flush=True)  # fmt: skip
        for s in range(0, len(todo), batch):
            chunk = todo[s : s + batch]
            assert self.server is not None
            cpu0, load0, t0 = cpu_seconds(self.server.proc.pid), os.getloadavg()[0], time.time()
            start = time.perf_counter()
            got, bought = label_with_teacher(self.clf, chunk, self.cache, identity=identity,
                                             cost_of=self.cost_of, batch_size=batch)  # fmt: skip
            rec = {"what": what, "k": k, "n": bought, "wall_s": time.perf_counter() - start,
                   "server_cpu_s": cpu_seconds(self.server.proc.pid) - cpu0,
                   "load1": [load0, os.getloadavg()[0]],
                   "at": datetime.fromtimestamp(t0, UTC).isoformat(timespec="seconds")}  # fmt: skip
            with self.log_path.open("a") as fh:
                fh.write(json.dumps(rec) + "\n")
            done = s + len(chunk)
            print(f"[{what} k={k}] {done}/{len(todo)}  {rec['wall_s'] / max(1, bought):.1f} s/text"
                  f"  tokens in {sum(x.tokens_in for x in got) / len(got):.0f}"
                  f"  load {rec['load1'][1]:.1f}", flush=True)  # fmt: skip
        labels, _ = label_with_teacher(self.clf, texts, self.cache, identity=identity,
                                       cost_of=self.cost_of)  # fmt: skip
        return labels

    def ensure_server(self) -> None:
        """Start the server and point a freshly fitted classifier at it (same identity)."""
        if self.server is None:
            from slmstack.skills.llm_classifier import LLMClassifier

            self.server = Server(self.model, self.out)
            self.ready_at = time.monotonic()
            self.options["base_url"] = self.server.url
            params = self.clf.get_params() | {"backend_options": dict(self.options)}
            self.clf = LLMClassifier(**params).fit(self.seed_examples)
            self.clf.predict(["warm-up"])  # evaluates the system prompt once

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def teacher_summary(labels: list[Any], gold: list[str]) -> dict[str, Any]:
    from slmstack.costs.prices import from_nano, load_prices, to_nano

    prices = load_prices()
    tin = sum(x.tokens_in for x in labels)
    tout = sum(x.tokens_out for x in labels)
    local = sum(x.cost_nano_usd for x in labels)
    return {
        "n": len(labels),
        "accuracy": sum(x.label == g for x, g in zip(labels, gold, strict=True)) / len(labels),
        "abstained": sum(x.label is None for x in labels),
        "tokens_in": tin, "tokens_out": tout,
        "tokens_in_mean": tin / len(labels), "tokens_out_mean": tout / len(labels),
        "cost_gpt4_usd": str(from_nano(to_nano(prices.token_cost("gpt-4", tin, tout)))),
        "cost_local_usd": str(from_nano(local)),
        "local_seconds": float(local / 1e9 * 3600 / float(prices.machine(MACHINE).per_hour)),
    }  # fmt: skip
