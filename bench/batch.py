"""Benchmark ``slmstack batch``: the local engine against the Ray engine, 1 and 2 workers.

The workflow is an intent cascade: ``TextClassifier(strategy="head")`` on MiniLM
(trained once on 20 BANKING77 examples per intent, cached), answering when its
confidence is at least 0.5 and filing an inbox packet otherwise, with a SQLite ledger
(every run and step priced), so that the measured job writes what a real one does. The
20k texts are BANKING77 (train, then test) followed by CLINC150 (train, val, test), in
that order, read from ``/work/shared/datasets``; many CLINC150 texts are out of the
BANKING77 domain, so a share of them escalates.

Each configuration runs the whole job into a fresh output, inbox and ledger: ``local``
(spawned worker processes) and ``ray`` (Ray Data actor pool; the Ray instance is started
once beforehand, as a cluster would already run), with 1 and 2 workers, batch 64. Every
worker runs torch on one thread (``--threads 1``): on this 2-core machine a worker with
two threads already uses both cores, and 2 workers could not scale. Reported: the whole
job's items/s (with reading, loading the model in each worker, and start-up), the items/s
once the workers run (after the first batch is written), and the scaling efficiency,
``items/s(2) / (2 * items/s(1))``. The outputs of the two engines are compared (ignoring
latencies and packet ids), and the inbox and ledger are checked to hold one packet per
escalated row and one run per row.

Run (heavy: takes the shared CPU lock itself)::

    .venv/bin/python bench/batch.py --write-results
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SLMSTACK_PROGRESS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _batch_report import TARGET, medians, render, scaling
from _machine import cpu_lock, machine, scratch

REPO = Path(__file__).resolve().parents[1]
DATA = Path("/work/shared/datasets")
JSON_OUT = REPO / "bench" / "results" / "batch.json"
MD_OUT = Path("/tmp/brief/batch-results.md")
COMMAND = ".venv/bin/python bench/batch.py --write-results"


def texts(n: int) -> list[str]:
    """The first ``n`` of BANKING77 (train, test) then CLINC150 (train, val, test)."""
    out: list[str] = []
    for split in ("train", "test"):
        with open(DATA / "banking77" / f"{split}.csv", newline="", encoding="utf-8") as fh:
            out.extend(row["text"] for row in csv.DictReader(fh))
    clinc = json.loads((DATA / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    for split in ("train", "val", "test"):
        out.extend(text for text, _ in clinc[split])
    if len(out) < n:
        raise SystemExit(f"only {len(out)} texts in the data sets; pass --texts {len(out)}")
    return out[:n]


def prepare(folder: Path, n: int, per_intent: int) -> tuple[Path, Path]:
    """The workflow file (with its training data) and the input JSONL in ``folder``."""
    seen: dict[str, int] = {}
    with open(DATA / "banking77" / "train.csv", newline="", encoding="utf-8") as fh:
        train = []
        for row in csv.DictReader(fh):
            if seen.get(row["category"], 0) < per_intent:
                seen[row["category"]] = seen.get(row["category"], 0) + 1
                train.append((row["text"], row["category"]))
    with open(folder / "train.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(train)
    wf = folder / "workflow.yaml"
    wf.write_text(
        textwrap.dedent(
            """\
            name: intents
            skills:
              intent: {kind: slmstack.TextClassifier.v1, params: {strategy: head}, train: train.csv}
            steps:
              - cascade:
                  threshold: 0.5
                  tiers:
                    - intent
                    - escalate: {reason: intent unclear, message: A colleague will answer.}
            """
        ),
        encoding="utf-8",
    )
    data = folder / "in.jsonl"
    lines = (json.dumps({"text": t}, ensure_ascii=False) for t in texts(n))
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return wf, data


def rows(path: Path) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def comparable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in ("latency_ms", "packet_id")}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def steady_rate(ledger: Path) -> float:
    """Items/s while the workers run: the middle 80% of runs, by their ledger times.

    Each run's ledger row is stamped when its batch ends, in the worker, so this is the
    same clock for both engines. The driver's clock is not: Ray Data hands a block to the
    driver about one block late (measured: the first 512 rows reached the driver 3.7 s
    after the worker finished them, at 0.41 s a batch), so the rows-after-the-first-write
    rate (``first_write_items_per_s``) counts work done before its start and overstates
    the Ray engine's throughput.
    """
    from datetime import datetime

    with sqlite3.connect(ledger) as conn:
        stamps = sorted(
            datetime.fromisoformat(at).timestamp()
            for (at,) in conn.execute("select at from slmstack_ledger where kind='run'")
        )
    lo, hi = len(stamps) // 10, len(stamps) * 9 // 10
    return round((hi - lo) / (stamps[hi] - stamps[lo]), 1)


def one(sql: str, db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql).fetchone()[0])


class CpuSampler:
    """CPU seconds a run uses: its workers', and the rest (driver, pool, Ray's daemons).

    Samples this process's tree every 0.2 s (a worker's time is lost once it exits, so
    its last sample counts); a process there before the run counts from its first sample.
    """

    def __init__(self) -> None:
        import threading

        self._seen: dict[int, tuple[bool, float, float]] = {}  # pid: worker, first, last
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._before: set[int] = set()

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                used = times.user + times.system
                # Ray turns an idle worker process into an actor: look at every sample.
                cmd = " ".join(proc.cmdline())
                worker = any(m in cmd for m in ("spawn_main", "MapWorker", "_WorkflowActor"))
                was, first, _ = self._seen.get(
                    proc.pid, (False, used if proc.pid in self._before else 0.0, 0.0)
                )
                self._seen[proc.pid] = (was or worker, first, used)
            except psutil.Error:
                continue

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def __enter__(self) -> CpuSampler:
        import psutil

        me = psutil.Process()
        self._before = {p.pid for p in [me, *me.children(recursive=True)]}
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def split(self) -> dict[str, float]:
        workers = sum(last - first for w, first, last in self._seen.values() if w)
        rest = sum(last - first for w, first, last in self._seen.values() if not w)
        return {"worker_cpu_s": round(workers, 1), "other_cpu_s": round(rest, 1)}


def run(wf: Path, data: Path, folder: Path, engine: str, workers: int, size: int) -> dict:
    from slmstack.batchjob import run_job

    tag = f"{engine}-{workers}"
    out = folder / f"{tag}.jsonl"
    inbox, ledger = folder / f"{tag}-inbox.db", folder / f"{tag}-ledger.db"
    with CpuSampler() as cpu:
        s = run_job(
            wf, data, out, engine=engine, workers=workers, batch_size=size, threads=1,
            inbox=f"sqlite:///{inbox}", ledger=f"sqlite:///{ledger}",
        )  # fmt: skip
    got = rows(out)
    escalated = sum(r["status"] == "escalated" for r in got.values())
    res = {
        "engine": engine,
        "workers": workers,
        "rows": s.processed,
        "failed": s.failed,
        "seconds": round(s.seconds, 2),
        "startup_seconds": round(s.startup_seconds, 2),
        "items_per_s": round(s.processed / s.seconds, 1),
        "steady_items_per_s": steady_rate(ledger),
        "first_write_items_per_s": round(
            (s.processed - s.first_batch) / (s.seconds - s.startup_seconds), 1
        ),
        "escalated": escalated,
        "packets": one("select count(distinct key) from slmstack_packets", inbox),
        "packet_rows": one("select count(*) from slmstack_packets", inbox),
        "ledger_runs": one("select count(*) from slmstack_ledger where kind='run'", ledger),
        **cpu.split(),
    }
    print(json.dumps(res), flush=True)
    return res


def sink_costs(folder: Path, size: int) -> dict[str, float]:
    """What the shared sinks cost on SQLite: ms per inbox packet, ms per ledger batch."""
    from datetime import UTC, datetime

    from slmstack.costs.ledger import Ledger, LedgerRow
    from slmstack.workflows.inbox import Inbox, Packet

    inbox = Inbox(f"sqlite:///{folder / 'costs-inbox.db'}")
    n, per_batch = 300, 21  # about a third of a batch of 64 escalates here
    t0 = time.perf_counter()
    for i in range(n):
        inbox.add(
            Packet("intents", f"text {i}", "intent unclear", "confidence 0.3 < 0.5", key=f"k{i}")
        )
    packet_ms = (time.perf_counter() - t0) * 1000 / n
    t0 = time.perf_counter()
    for i in range(n):
        inbox.add(Packet("intents", f"text {i}", "intent unclear", "again", key=f"k{i}"))
    duplicate_ms = (time.perf_counter() - t0) * 1000 / n
    t0 = time.perf_counter()
    for b in range(n // per_batch):
        inbox.add_many([Packet("intents", f"text {i}", "intent unclear", "low", key=f"b{b}-{i}")
                        for i in range(per_batch)])  # fmt: skip
    batched_ms = (time.perf_counter() - t0) * 1000 / (n // per_batch * per_batch)
    ledger = Ledger(f"sqlite:///{folder / 'costs-ledger.db'}", batch_size=10**9)
    batches, at = 30, datetime.now(UTC)
    t0 = time.perf_counter()
    for b in range(batches):
        for r in range(size):  # a run row and its two step rows, as the cascade writes
            rid = f"b{b}r{r}"
            ledger.append([LedgerRow(rid, p, "intents", "s", "run" if not p else "skill", at)
                           for p in ("", "steps[0]", "steps[0].cascade.tiers[0]")])  # fmt: skip
        ledger.flush()
    ledger_ms = (time.perf_counter() - t0) * 1000 / batches
    ledger.close()
    return {"inbox_ms_per_packet": round(packet_ms, 2),
            f"inbox_ms_per_packet_in_batches_of_{per_batch}": round(batched_ms, 2),
            "inbox_ms_per_duplicate_packet": round(duplicate_ms, 2),
            f"ledger_ms_per_batch_of_{size}": round(ledger_ms, 2)}  # fmt: skip


def measure(n: int, size: int, per_intent: int, rounds: int) -> dict[str, Any]:
    import ray

    from slmstack.workflows import load_workflow

    folder = scratch("slmstack-bench-batch-")
    wf, data = prepare(folder, n, per_intent)
    t0 = time.perf_counter()
    load_workflow(wf)  # trains and caches the head once, outside the timings
    train_s = time.perf_counter() - t0
    runs: list[dict[str, Any]] = []
    ray_start: list[float] = []
    for r in range(rounds):
        # Odd rounds run 2 workers first, so a drift of the machine's speed during a
        # round does not always favour the same side of the ratio.
        order = (1, 2) if r % 2 == 0 else (2, 1)
        here = folder / f"round{r}"
        here.mkdir()
        runs += [{"round": r, **run(wf, data, here, "local", w, size)} for w in order]
        # Started after the local runs, so that its idle daemons do not share their cores.
        t0 = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, _node_ip_address="127.0.0.1")
        ray_start.append(round(time.perf_counter() - t0, 1))
        try:
            runs += [{"round": r, **run(wf, data, here, "ray", w, size)} for w in order]
        finally:
            ray.shutdown()
    first = folder / "round0"
    outputs = {
        f"round{r['round']}/{r['engine']}{r['workers']}": rows(
            folder / f"round{r['round']}" / f"{r['engine']}-{r['workers']}.jsonl"
        )
        for r in runs
    }
    base = {k: comparable(v) for k, v in rows(first / "local-1.jsonl").items()}
    identical = {k: {i: comparable(r) for i, r in v.items()} == base for k, v in outputs.items()}
    return {
        "sink_costs_sqlite": sink_costs(folder, size),
        "texts": n,
        "batch_size": size,
        "rounds": rounds,
        "train_examples": per_intent * 77,
        "train_seconds": round(train_s, 1),
        "ray_start_seconds": ray_start,
        "runs": runs,
        "medians": medians(runs),
        "speedup_2_over_1": scaling(runs),
        "identical_to_local_1": identical,
        "torch_threads_per_worker": 1,
        "target_ray_2_over_1": TARGET,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--per-intent", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="repeats of all four runs")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    with cpu_lock() as waited:
        print(f"lock held after {waited:.0f} s", flush=True)
        res = measure(args.texts, args.batch_size, args.per_intent, args.rounds)
    res["machine"] = machine()
    extra = [f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
             if k != "write_results" and v != parser.get_default(k)]  # fmt: skip
    res["command"] = " ".join([COMMAND, *extra])
    text = render(res)
    print(text)
    if args.write_results:
        JSON_OUT.parent.mkdir(parents=True, exist_ok=True)
        JSON_OUT.write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        MD_OUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
