"""Benchmark the cost ledger at scale: exact totals over 100k requests, and its cost per run.

Part 1, exactness. 100,000 simulated requests of three workflows go through the library's
own metering (:class:`slmstack.workflows.metering.Meter` turns each run's trace into
priced rows, exactly as ``Workflow.run`` does) into a real :class:`slmstack.costs.Ledger`
(a SQLite file; and PostgreSQL with ``--postgres``). The traces are synthetic (random
latencies and token counts); everything after them is the library's code. Steps are
priced per token (packaged models, a fallback model that answered instead of the first
choice, and ``acme-frac``, a price of 37.5 nano-dollars a token, which is not a whole
number of nano-dollars) and by compute time (local skills on three machines, a
self-hosted model on ``gpu-l4``). The ledger's totals (overall, by model, by workflow,
by UTC day) are compared with an independent recomputation: prices read from the YAML
files as ``decimal.Decimal``, each row's exact cost summed unrounded at 80 digits.

Part 2, overhead. A small support-desk workflow over the skills trained by
``examples/support-desk/run.py`` (language → FAQ in German or French; or the intent
classifier in a cascade → FAQ answerer or a queue template) runs the same texts with no
ledger, with no ledger again (an A/A control: the noise floor), with a SQLite ledger and
with a PostgreSQL one, in one process. Conditions alternate in blocks of texts, the
order rotating each block, so drift (the other jobs on the machine) falls on all of them
alike. The per-request overhead is paired on the same text. Then the metering alone is
timed on the stored results (rows built, buffered and written), which gives the ledger's
cost per request without the skills' noise, and its write throughput.

Run (heavy: hold the shared CPU lock; ``--postgres`` starts a throwaway PostgreSQL with
scripts/test.sh's own shell block unless $SLMSTACK_TEST_PG_URL names a server)::

    flock /tmp/slmstack-cpu.lock .venv/bin/python bench/ledger.py --postgres --write-results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from importlib import resources
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SLMSTACK_PROGRESS", "0")
os.environ.pop("SLMSTACK_PRICES", None)  # the packaged table plus EXTRA_PRICES, nothing else

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "RESULTS.md"
JSON_OUT = REPO / "bench" / "results" / "ledger.json"
DESK = REPO / "examples" / "support-desk"
SECTION = "## The cost ledger at 100k requests (`bench/ledger.py`)"
COMMAND = "flock /tmp/slmstack-cpu.lock .venv/bin/python bench/ledger.py --postgres --write-results"
PG_ENV = "SLMSTACK_TEST_PG_URL"
PG_VERSION: list[str] = []  # the server's, once a database is made there
FLAGS_CMD = r"grep -o 'avx512[a-z_]*\|amx[a-z_]*\|avx2' /proc/cpuinfo | sort -u"
CENT = Decimal("0.01")

# Over the packaged table: a price that is not a whole number of nano-dollars per token
# (37.5 and 150 n$), and a self-hosted model priced by its machine's time.
EXTRA_PRICES: dict[str, Any] = {
    "models": {
        "acme-frac": {"input_per_1k": "0.0000375", "output_per_1k": "0.00015"},
        "my-vllm": {"machine": "gpu-l4"},
    }
}
# workflow: (share of requests, machine, local skills, skills calling an API, backends)
FLOWS: dict[str, tuple[float, str | None, list[str], dict[str, str], dict[str, list[str]]]] = {
    "support-desk": (0.6, None, ["lang", "intent", "faq_en"], {"extract": "acme-frac"},
                     {"llm": ["gpt-4o", "claude-3-5-haiku"]}),
    "contracts": (0.25, "gpu-a100", ["clauses"], {"summarize": "gpt-4.1-mini"},
                  {"big": ["gpt-4"], "self": ["my-vllm"]}),
    "receipts": (0.15, "cpu-4vcpu", ["fields"], {}, {"cheap": ["gemini-1.5-flash", "gpt-4o-mini"]}),
}  # fmt: skip
ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-7))]


# ---------------------------------------------------------------- environment


def machine_info() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    flags = subprocess.run(FLAGS_CMD, shell=True, capture_output=True, text=True).stdout.split()
    import sqlite3

    import sqlalchemy

    return {"cpu": model, "cores": os.cpu_count(), "flags": flags, "flags_command": FLAGS_CMD,
            "python": platform.python_version(), "sqlalchemy": sqlalchemy.__version__,
            "sqlite": sqlite3.sqlite_version}  # fmt: skip


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def pg_block() -> str:
    """The PostgreSQL block of scripts/test.sh, as written there."""
    lines = (REPO / "scripts" / "test.sh").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# PostgreSQL, for the"))
    end = next(i for i in range(start, len(lines)) if lines[i] == "fi")
    return "\n".join(lines[start : end + 1])


def with_postgres(argv: list[str]) -> int:
    """Run this script again inside scripts/test.sh's PostgreSQL block (stopped on exit)."""
    script = f'set -euo pipefail\n{pg_block()}\n"$@"\n'
    env = {**os.environ, "SLMSTACK_BENCH_PG": "1"}
    cmd = ["bash", "-c", script, "bash", sys.executable, str(Path(__file__).resolve()), *argv]
    return subprocess.call(cmd, cwd=REPO, env=env)


def pg_database(server: str) -> str:
    """A new empty database on ``server``; its URL."""
    import sqlalchemy as sa

    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"slmstack_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        version = conn.execute(sa.text("show server_version")).scalar()
    admin.dispose()
    PG_VERSION.append(str(version))
    return sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    import sqlalchemy as sa

    made = sa.engine.make_url(url)
    admin = sa.create_engine(made.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{made.database}" WITH (FORCE)'))
    admin.dispose()


# ---------------------------------------------------------------- part 1: exactness


class Remote:
    """Looks like a remote backend to the meter (a base_url, a model name, fallbacks)."""

    def __init__(self, name: str, fallbacks: list[str] | None = None):
        self.name = name
        self.base_url = "https://api.example.invalid/v1"
        self.fallbacks = [Remote(f) for f in fallbacks or []]


class RemoteSkill:
    """A skill holding a remote backend, as LLMClassifier does."""

    def __init__(self, model: str):
        self.backend_ = Remote(model)


class LocalSkill:
    """A skill that runs in-process (priced by its time on the workflow's machine)."""


def exact_prices() -> tuple[dict[str, tuple[Decimal, Decimal] | str], dict[str, Decimal], str]:
    """Model prices (per-1k pair, or a machine name), machine prices, default machine.

    Read here from the YAML text, not through slmstack.costs: the recomputation is
    independent of the code it checks.
    """
    text = resources.files("slmstack.costs").joinpath("prices.yaml").read_text(encoding="utf-8")
    table = yaml.safe_load(text)
    models: dict[str, tuple[Decimal, Decimal] | str] = {}
    for name, e in {**table["models"], **EXTRA_PRICES["models"]}.items():
        models[name] = e["machine"] if "machine" in e else (
            Decimal(str(e["input_per_1k"])), Decimal(str(e["output_per_1k"])))  # fmt: skip
    machines = {k: Decimal(str(v["per_hour"])) for k, v in table["machines"].items()}
    return models, machines, table["default_machine"]


def simulate(n: int, seed: int) -> tuple[list[tuple[str, Any, str, datetime]], dict[str, Any]]:
    """``n`` requests as (workflow, Result, request id, time), and their exact sums.

    Sums: ``{"total"|"model"|"workflow"|"day": {key: [exact $, rows, tokens in, out]}}``.
    """
    from slmstack.types import Prediction, Usage
    from slmstack.workflows import Decision, Escalation, Result, StepTrace

    models, machines, default_machine = exact_prices()
    rnd = random.Random(seed)
    sums: dict[str, dict[str, list[Any]]] = {g: {} for g in ("total", "model", "workflow", "day")}
    micro = {g: defaultdict(Decimal) for g in sums}  # the same rows rounded to micro-dollars
    names, weights = list(FLOWS), [f[0] for f in FLOWS.values()]
    start = datetime(2025, 5, 1, tzinfo=UTC)
    out = []

    def add(wf: str, day: str, model: str, cost: Decimal, t_in: int, t_out: int) -> None:
        rounded = cost.quantize(Decimal("1e-6"), rounding=ROUND_HALF_EVEN)
        for group, key in (("total", "total"), ("model", model), ("workflow", wf), ("day", day)):
            acc = sums[group].setdefault(key, [Decimal(0), 0, 0, 0])
            acc[0] += cost
            acc[1] += 1
            acc[2] += t_in
            acc[3] += t_out
            micro[group][key] += rounded

    def compute(machine: str, latency_ms: float) -> Decimal:
        return Decimal(latency_ms / 1000) * machines[machine] / 3600

    with localcontext() as ctx:
        ctx.prec = 80
        for i in range(n):
            wf = rnd.choices(names, weights)[0]
            _, machine, local, api_skills, backends = FLOWS[wf]
            machine = machine or default_machine
            at_utc = start + timedelta(seconds=rnd.uniform(0, 31 * 86400))
            day = at_utc.date().isoformat()  # the UTC day, whatever zone the time is given in
            trace = []
            for j, skill in enumerate(local[: rnd.randint(1, len(local))]):
                lat, t_in = rnd.uniform(0.05, 250.0), rnd.randint(3, 60)
                name = f"answer ({skill})" if skill == "faq_en" else skill
                node = StepTrace(f"steps[{j}]", "skill", name, latency_ms=lat,
                                 usage=Usage(t_in, 0, lat))  # fmt: skip
                trace.append(node)
                add(wf, day, skill, compute(machine, lat), t_in, 0)
            for skill, model in api_skills.items():
                if rnd.random() < 0.5:
                    t_in, t_out = rnd.randint(20, 2000), rnd.randint(1, 300)
                    lat = rnd.uniform(100, 3000)
                    trace.append(StepTrace(f"steps[{len(trace)}]", "skill", skill, latency_ms=lat,
                                           usage=Usage(t_in, t_out, lat)))  # fmt: skip
                    p_in, p_out = models[model]  # type: ignore[misc]
                    add(wf, day, model, (t_in * p_in + t_out * p_out) / 1000, t_in, t_out)
            escalation = None
            if rnd.random() < 0.35:  # a cascade that escalated to an LLM
                backend = rnd.choice(list(backends))
                chain = backends[backend]
                model = chain[-1] if len(chain) > 1 and rnd.random() < 0.1 else chain[0]
                t_in, t_out = rnd.randint(50, 4000), rnd.randint(1, 800)
                lat = rnd.uniform(200, 6000)
                leaf = StepTrace(
                    f"steps[{len(trace)}].cascade.tiers[1]", "escalate", f"escalate → {backend}",
                    output=Prediction(data={"escalated_to": backend, "model": model}),
                    latency_ms=lat, usage=Usage(t_in, t_out, lat),
                )  # fmt: skip
                own = rnd.uniform(0.005, 0.5)
                node = StepTrace(
                    f"steps[{len(trace)}]", "cascade", "cascade", latency_ms=lat + own,
                    decision=Decision("next", "confidence 0.41 < threshold 0.5"),
                    usage=Usage(t_in, t_out, lat + own), children=[leaf],
                )  # fmt: skip
                trace.append(node)
                price = models[model]
                if isinstance(price, str):  # self-hosted: its machine's time
                    add(wf, day, model, compute(price, lat), t_in, t_out)
                else:
                    add(wf, day, model, (t_in * price[0] + t_out * price[1]) / 1000, t_in, t_out)
                # the cascade's own time (its latency less its child's), on the workflow's machine
                add(wf, day, "", compute(machine, max(0.0, node.latency_ms - lat)), 0, 0)
                escalation = Escalation(backend, "unsure", "confidence 0.41 < threshold 0.5")
            result = Result(
                input="", output=Prediction(), outputs={},
                status="escalated" if escalation else "completed", escalation=escalation,
                trace=trace, latency_ms=sum(t.latency_ms for t in trace),
            )  # fmt: skip
            out.append((wf, result, f"r{i:06d}", at_utc.astimezone(rnd.choice(ZONES))))
    return out, {"exact": sums, "micro": micro}


def meters() -> dict[str, Any]:
    from slmstack.costs import load_prices
    from slmstack.workflows.metering import Meter

    table = load_prices(EXTRA_PRICES)
    out = {}
    for wf, (_, machine, local, api_skills, backends) in FLOWS.items():
        skills: dict[str, object] = {s: LocalSkill() for s in local}
        skills.update({s: RemoteSkill(m) for s, m in api_skills.items()})
        remote = {k: Remote(chain[0], chain[1:]) for k, chain in backends.items()}
        out[wf] = Meter(wf, skills=skills, backends=remote, prices=table, machine=machine)
    return out


def exactness(url: str, requests: list[tuple[str, Any, str, datetime]], want: dict[str, Any],
              kind: str) -> dict[str, Any]:  # fmt: skip
    """Meter ``requests`` into a ledger at ``url``; compare its sums with ``want``."""
    import sqlalchemy as sa

    from slmstack.costs import Ledger

    by_flow = meters()
    t_meter = t_append = 0.0
    rows = 0
    load_before = load()
    with Ledger(url) as ledger:
        for wf, result, rid, at in requests:
            t0 = time.perf_counter()
            batch = by_flow[wf].rows(result, rid, at)
            t1 = time.perf_counter()
            ledger.append(batch)
            t_append += time.perf_counter() - t1
            t_meter += t1 - t0
            rows += len(batch)
        t0 = time.perf_counter()
        ledger.flush()
        t_append += time.perf_counter() - t0
        got: dict[str, dict[str, Any]] = {}
        t0 = time.perf_counter()
        got["total"] = {"total": ledger.total()}
        t_total = time.perf_counter() - t0
        t_spend = {}
        for group in ("model", "workflow", "day"):
            t0 = time.perf_counter()
            got[group] = {s.key: s for s in ledger.spend(group)}  # type: ignore[arg-type]
            t_spend[group] = time.perf_counter() - t0
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            run_sum = conn.execute(sa.text(
                "select sum(cost_nusd), count(*) from slmstack_ledger where kind = 'run'"
            )).one()  # fmt: skip
        engine.dispose()
    checks: dict[str, Any] = {}
    worst = {"diff_usd": Decimal(0), "per_row_usd": Decimal(0), "where": ""}
    micro_worst = Decimal(0)
    with localcontext() as ctx:
        ctx.prec = 80
        for group, expected in want["exact"].items():
            g = got[group]
            keys_ok = set(g) == set(expected)
            counts_ok = all(
                (g[k].steps, g[k].tokens_in, g[k].tokens_out) == tuple(v[1:])
                for k, v in expected.items() if k in g
            )  # fmt: skip
            diffs = {k: g[k].cost - v[0] for k, v in expected.items() if k in g}
            cents = sum(g[k].cost.quantize(CENT) != v[0].quantize(CENT) for k, v in expected.items()
                        if k in g)  # fmt: skip
            big = max(diffs, key=lambda k: abs(diffs[k]))
            per_row = max(abs(d) / expected[k][1] for k, d in diffs.items())
            if abs(diffs[big]) > abs(worst["diff_usd"]):
                worst.update(diff_usd=diffs[big], where=f"{group} {big!r}")
            worst["per_row_usd"] = max(worst["per_row_usd"], per_row)
            m = max(abs(want["micro"][group][k] - v[0]) for k, v in expected.items())
            micro_worst = max(micro_worst, m)
            checks[group] = {
                "groups": len(expected), "keys_match": keys_ok,
                "counts_and_tokens_match": counts_ok,
                "max_abs_diff_usd": str(abs(diffs[big])), "at": big,
                "max_abs_diff_per_row_usd": f"{per_row:.3E}",
                "cent_mismatches": cents, "max_abs_diff_if_micro_dollar_rows_usd": f"{m:.12f}",
            }  # fmt: skip
    total = got["total"]["total"]
    exact_total = want["exact"]["total"]["total"][0]
    return {
        "database": kind,
        "requests": len(requests),
        "rows": rows,
        "step_rows": total.steps,
        "requests_counted": total.requests,
        "total_usd_ledger": str(total.cost),
        "total_usd_exact": f"{exact_total:.15f}",
        "run_rows_sum_equals_step_rows": int(run_sum[0]) == total.cost_nusd,
        "max_abs_diff_usd": str(abs(worst["diff_usd"])),
        "max_abs_diff_at": worst["where"],
        "max_abs_diff_per_row_usd": f"{worst['per_row_usd']:.3E}",
        "max_abs_diff_if_micro_dollar_rows_usd": f"{micro_worst:.12f}",
        "groups": checks,
        "exact_to_the_cent": abs(worst["diff_usd"]) < Decimal("0.005")
        and all(c["keys_match"] and c["counts_and_tokens_match"] for c in checks.values()),
        "seconds": {"meter_rows": round(t_meter, 3), "ledger_append_and_flush": round(t_append, 3),
                    "total_query": round(t_total, 4),
                    **{f"spend_by_{k}": round(v, 4) for k, v in t_spend.items()}},
        "write_rows_per_s": round(rows / t_append),
        "meter_us_per_request": round(t_meter / len(requests) * 1e6, 1),
        "load_before": load_before,
        "load_after": load(),
    }  # fmt: skip


# ---------------------------------------------------------------- part 2: overhead


def desk_skills(cache: Path) -> dict[str, Any]:
    from slmstack import load as load_skill

    skills = {}
    for name in ("lang", "intent", "faq_en", "faq_de", "faq_fr"):
        found = sorted(cache.glob(f"{name}-*"))
        if not found:
            raise SystemExit(
                f"no cached skill {name!r} in {cache}; train them once with "
                "`.venv/bin/python examples/support-desk/run.py` (a few minutes)"
            )
        skills[name] = load_skill(found[-1])
    return skills


def desk_workflow(skills: dict[str, Any], ledger: Any) -> Any:
    from slmstack.workflows import (
        CascadeStep,
        RouteStep,
        SequenceStep,
        SkillStep,
        TemplateStep,
        Workflow,
    )

    def faq(lang: str) -> Any:
        tiers = [SkillStep(f"faq_{lang}", id="answer"), TemplateStep("A colleague will answer.")]
        return CascadeStep(tiers, threshold=0.0)

    def desk() -> Any:
        return SequenceStep([
            CascadeStep([SkillStep("intent"), TemplateStep("A colleague will get back to you.")],
                        threshold=0.5),
            RouteStep({"faq": faq("en")}, TemplateStep("Queued for our {intent.label} team."),
                      on="intent"),
        ])  # fmt: skip

    steps = [RouteStep({"de": faq("de"), "fr": faq("fr"), "en": desk()}, desk(), skill="lang")]
    return Workflow(steps, skills=skills, name="support-desk", ledger=ledger)


def desk_texts(n: int) -> list[str]:
    import csv

    texts = []
    for name in ("intents.csv", "languages.csv"):
        with (DESK / "data" / name).open(encoding="utf-8", newline="") as f:
            texts += [r["text"] for r in csv.DictReader(f)]
    for line in (DESK / "data" / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            texts.append(json.loads(line)["text"])
    random.Random(0).shuffle(texts)
    return [texts[i % len(texts)] for i in range(n)]


def bootstrap(t: Any, base: Any, draws: int = 2000) -> dict[str, list[float]]:
    """95% intervals of the total-time overhead (%) and the p50 paired overhead (ms).

    Texts are resampled with their pair of times, so the intervals hold sampling noise
    (the shared machine's included), not drift between conditions.
    """
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(t), size=(draws, len(t)))
    total = (t[idx].sum(axis=1) / base[idx].sum(axis=1) - 1) * 100
    p50 = np.median((t - base)[idx], axis=1) * 1000
    return {
        "total_pct": [round(float(x), 2) for x in np.percentile(total, [2.5, 97.5])],
        "p50_ms": [round(float(x), 4) for x in np.percentile(p50, [2.5, 97.5])],
    }


def overhead(n: int, block: int, pg_url: str | None, folder: Path) -> dict[str, Any]:
    import torch

    from slmstack.costs import Ledger

    skills = desk_skills(DESK / ".slmstack-cache")
    urls = {"sqlite": f"sqlite:///{folder / 'overhead.db'}"}
    if pg_url:
        urls["postgresql"] = pg_url
    flows = {"none": desk_workflow(skills, None), "none (A/A control)": desk_workflow(skills, None)}
    ledgers = {k: Ledger(u) for k, u in urls.items()}
    flows.update({k: desk_workflow(skills, ledgers[k]) for k in urls})
    texts = desk_texts(n)
    names = list(flows)
    for text in texts[:20]:  # warm-up, untimed
        for wf in flows.values():
            wf.run(text)
    times: dict[str, list[float]] = {k: [0.0] * n for k in names}
    results = [None] * n
    load_before = load()
    t_start = time.perf_counter()
    for b, lo in enumerate(range(0, n, block)):
        order = names[b % len(names) :] + names[: b % len(names)]
        for name in order:
            wf = flows[name]
            for i in range(lo, min(n, lo + block)):
                t0 = time.perf_counter()
                result = wf.run(texts[i])
                times[name][i] = time.perf_counter() - t0
                if name == "none":
                    results[i] = result
    wall = time.perf_counter() - t_start
    load_after = load()
    for ledger in ledgers.values():
        ledger.flush()
    stored = {k: len(led.rows()) for k, led in ledgers.items()}
    for ledger in ledgers.values():
        ledger.close()
    base = times["none"]
    conditions = {}
    for name in names:
        t = times[name]
        paired = [a - b for a, b in zip(t, base, strict=True)]
        lo_hi = bootstrap(np.array(t), np.array(base))
        conditions[name] = {
            "mean_ms": round(statistics.fmean(t) * 1000, 3),
            "p50_ms": round(statistics.median(t) * 1000, 3),
            "overhead_total_pct": round((sum(t) / sum(base) - 1) * 100, 2),
            "overhead_total_pct_ci95": lo_hi["total_pct"],
            "overhead_p50_per_request_ms": round(statistics.median(paired) * 1000, 4),
            "overhead_p50_per_request_ms_ci95": lo_hi["p50_ms"],
            "overhead_p50_per_request_pct": round(
                statistics.median([x / y for x, y in zip(paired, base, strict=True)]) * 100, 2),
        }  # fmt: skip
    # The metering alone, on the stored results: rows built, buffered and written.
    direct = {}
    for kind in urls:
        url = f"sqlite:///{folder / 'direct.db'}" if kind == "sqlite" else urls[kind]
        with Ledger(url) as ledger:
            meter = desk_workflow(skills, ledger).meter()
            t0 = time.perf_counter()
            rows = [meter.rows(r, uuid.uuid4().hex, datetime.now(UTC)) for r in results]
            t_rows = time.perf_counter() - t0
            t0 = time.perf_counter()
            for batch in rows:
                ledger.append(batch)
            ledger.flush()
            t_write = time.perf_counter() - t0
            count = sum(len(r) for r in rows)
        direct[kind] = {
            "requests": n, "rows": count,
            "meter_us_per_request": round(t_rows / n * 1e6, 1),
            "append_and_write_us_per_request": round(t_write / n * 1e6, 1),
            "ledger_us_per_request": round((t_rows + t_write) / n * 1e6, 1),
            "ledger_pct_of_mean_request": round(
                (t_rows + t_write) / n / statistics.fmean(base) * 100, 3),
            "write_rows_per_s": round(count / t_write),
        }  # fmt: skip
    return {
        "requests_per_condition": n, "block": block, "conditions": conditions,
        "texts": texts, "raw_ms": {k: [round(x * 1000, 4) for x in v] for k, v in times.items()},
        "rows_stored": stored, "direct": direct, "wall_s": round(wall, 1),
        "torch_threads": torch.get_num_threads(), "load_before": load_before,
        "load_after": load_after,
        "routes": sorted({" → ".join(r.route) for r in results if r is not None})[:12],
    }  # fmt: skip


# ---------------------------------------------------------------- report


def render(res: dict[str, Any]) -> str:
    info = res["machine"]
    p1 = res["exactness"]
    lines = [
        SECTION, "",
        f"Command: `{COMMAND}`", "",
        f"Measured {res['when']} on {info['cores']} CPU cores ({info['cpu']}; flags from "
        f"`{FLAGS_CMD}`: {' '.join(info['flags'])}), Python {info['python']}, SQLAlchemy "
        f"{info['sqlalchemy']}, SQLite {info['sqlite']}, PostgreSQL "
        f"{info.get('postgresql') or 'not run'}. The cores are "
        "shared with other engineers' jobs (an LLM benchmark runs niced, outside the lock); "
        "the load average (1, 5, 15 min) is given beside each timing.", "",
        f"**Part 1, exactness.** {p1[0]['requests']:,} simulated requests of three workflows "
        "(support-desk on cpu-2vcpu, contracts on gpu-a100, receipts on cpu-4vcpu), metered by "
        "the library's `Meter.rows` (what `Workflow.run` records) into a real `Ledger`. Steps "
        "priced per token (gpt-4o with claude-3-5-haiku as its fallback, gpt-4, gpt-4.1-mini, "
        "gemini-1.5-flash with gpt-4o-mini as fallback, and `acme-frac` at $0.0000375 / "
        "$0.00015 per 1k: 37.5 and 150 nano-dollars a token) and by compute time (local skills "
        "on three machines, the cascades' own time, and `my-vllm` self-hosted on gpu-l4). "
        "Times are given in three time zones; days are UTC. The reference is recomputed "
        "independently: prices read from the YAML as `Decimal`, each row's exact cost summed "
        "unrounded (80 digits).", "",
        "| database | requests | rows (steps + runs) | total, ledger | total, exact | largest "
        "difference (group) | largest difference per row | groups (model / workflow / day) | "
        "counts, tokens, keys equal | cents equal | exact to the cent (< $0.005) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for p in p1:
        g = p["groups"]
        cents = sum(c["cent_mismatches"] for c in g.values())
        same = all(c["keys_match"] and c["counts_and_tokens_match"] for c in g.values())
        lines.append(
            f"| {p['database']} | {p['requests']:,} | {p['rows']:,} | "
            f"${Decimal(p['total_usd_ledger']):,.9f} | ${Decimal(p['total_usd_exact']):,.12f} | "
            f"${Decimal(p['max_abs_diff_usd']):.9f} ({p['max_abs_diff_at']}) | "
            f"{Decimal(p['max_abs_diff_per_row_usd']).scaleb(9):.4f} n$ | "
            f"{g['model']['groups']} / {g['workflow']['groups']} / {g['day']['groups']} | "
            f"{'yes' if same else 'NO'} | {'all' if not cents else f'{cents} differ'} | "
            f"{'yes' if p['exact_to_the_cent'] else 'NO'} |"
        )  # fmt: skip
    lines += ["", "| database | metering (`Meter.rows`) per request | ledger write throughput "
              "(append + flush, batches of 512) | `total()` | `spend(model / workflow / day)` "
              "| load average before → after |", "|---|---|---|---|---|---|"]  # fmt: skip
    for p in p1:
        s = p["seconds"]
        lines.append(
            f"| {p['database']} | {p['meter_us_per_request']} µs | {p['write_rows_per_s']:,} "
            f"rows/s ({s['ledger_append_and_flush']} s for {p['rows']:,} rows) | "
            f"{s['total_query'] * 1000:.0f} ms | {s['spend_by_model'] * 1000:.0f} / "
            f"{s['spend_by_workflow'] * 1000:.0f} / {s['spend_by_day'] * 1000:.0f} ms | "
            f"{p['load_before']} → {p['load_after']} |"
        )
    micro = max(Decimal(p["max_abs_diff_if_micro_dollar_rows_usd"]) for p in p1)
    lines += ["", f"For scale: had each row been rounded to micro-dollars instead of "
              f"nano-dollars, the largest group would be off by ${micro:.4f}.", ""]  # fmt: skip
    p2 = res.get("overhead")
    if p2:
        lines += [
            f"**Part 2, overhead.** A support-desk workflow over the example's trained skills "
            "(LanguageDetector → FAQAnswerer de/fr; or TextClassifier `head` intent in a "
            "cascade → FAQAnswerer en or a queue template), "
            f"{p2['requests_per_condition']:,} texts per condition (the example's 282 texts, "
            f"cycled), one at a time, torch with {p2['torch_threads']} threads; conditions "
            f"alternate in blocks of {p2['block']} texts, the order rotating each block; "
            f"{p2['wall_s']} s in all, load average {p2['load_before']} → {p2['load_after']}.",
            "",
            "| condition | mean per request | p50 per request | overhead, total time (95% CI) "
            "| p50 of per-request overhead, paired on the same text (95% CI) | target |",
            "|---|---|---|---|---|---|",
        ]  # fmt: skip
        for name, c in p2["conditions"].items():
            ci, cp = c["overhead_total_pct_ci95"], c["overhead_p50_per_request_ms_ci95"]
            over = (
                "—"
                if name == "none"
                else (f"{c['overhead_total_pct']:+.2f}% ({ci[0]:+.2f} to {ci[1]:+.2f})")
            )
            paired = (
                "—"
                if name == "none"
                else (
                    f"{c['overhead_p50_per_request_ms']:+.3f} ms "
                    f"({c['overhead_p50_per_request_pct']:+.2f}%; {cp[0]:+.3f} to {cp[1]:+.3f} ms)"
                )
            )
            target = "≤ 5%" if name in p2["direct"] else ""
            lines.append(f"| {name} | {c['mean_ms']:.2f} ms | {c['p50_ms']:.2f} ms | {over} | "
                         f"{paired} | {target} |")  # fmt: skip
        stored = ", ".join(f"{k} {v:,}" for k, v in p2["rows_stored"].items())
        lines += ["", f"Rows each ledger held after the run (warm-up included): {stored}."]
        lines += ["", "The metering alone, timed on the stored results of the `none` runs "
                  "(no skills running, so no skill noise):", "",
                  "| database | build rows (`Meter.rows`) | buffer + write | ledger per request "
                  "| share of a mean request | write throughput |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for kind, d in p2["direct"].items():
            lines.append(
                f"| {kind} | {d['meter_us_per_request']} µs | "
                f"{d['append_and_write_us_per_request']} µs | {d['ledger_us_per_request']} µs | "
                f"{d['ledger_pct_of_mean_request']:.2f}% | {d['write_rows_per_s']:,} rows/s "
                f"({d['rows']:,} rows) |"
            )
    lines += ["", "### Caveats", ""] + [f"- {c}" for c in res["caveats"]] + [""]
    return "\n".join(lines)


def write_section(text: str) -> None:
    """Append the section to RESULTS.md, or replace this script's own earlier section."""
    current = RESULTS.read_text(encoding="utf-8")  # re-read now: others append too
    if SECTION in current:
        head, rest = current.split(SECTION, 1)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1 :] if nxt >= 0 else ""
        RESULTS.write_text(head + text + ("\n" + tail if tail else ""), encoding="utf-8")
    else:
        RESULTS.write_text(current.rstrip("\n") + "\n\n" + text, encoding="utf-8")


def caveats(res: dict[str, Any]) -> list[str]:
    out = [
        "Part 1's traces are synthetic (random latencies, token counts, routes); the pricing, "
        "the rows, the buffer, the inserts and the sums are the library's code. The reference "
        "shares only the definition of a step's priced time (its latency less its children's, "
        "as a float) and of the UTC day.",
        "Each row is rounded once, to a nano-dollar (half to even), so a sum over r rows may "
        "differ from the exact sum by up to r × 0.5 n$; the per-row column shows how close to "
        "that bound the sums come. Token prices with up to six decimals per 1k are whole "
        "nano-dollars a token, so only compute time and `acme-frac` round at all.",
        "The packaged table has no per-token price that is not a whole number of nano-dollars "
        "(gemini-1.5-flash's $0.000075 per 1k is 75 n$ a token); `acme-frac` was added over "
        "it for that case, as a user's `prices:` would be.",
    ]
    if not any(p["database"] == "postgresql" for p in res["exactness"]):
        out.append("PostgreSQL was not run (no `--postgres`, or no server could be started): "
                   "SQLite only.")  # fmt: skip
    p2 = res.get("overhead")
    if p2:
        direct = ", ".join(f"{d['ledger_us_per_request']:.0f} µs on {k}"
                           for k, d in p2["direct"].items())  # fmt: skip
        out += [
            "The ledger costs a roughly fixed time per request (here " + direct + ": building "
            "the rows, and one multi-row insert per 512 rows or 5 s, made inside the request "
            "that fills the buffer), so its share depends on how fast the workflow is: with "
            f"requests of {p2['conditions']['none']['p50_ms']:.1f} ms p50 it is the share shown; "
            "on a contended machine, where the skills slow down far more than the ledger, it "
            "reads smaller. Compare each ledger row with the A/A control (two identical "
            "no-ledger workflows), which shows how much a difference of nothing reads as here; "
            "the intervals resample texts and do not cover bursts of load that span a block.",
        ]
    out += [
        "SQLite writes to a file in the system temporary folder with SQLite's default "
        "durability (a sync per flushed batch); PostgreSQL is a throwaway local cluster "
        "started with `-F` (no fsync) by scripts/test.sh's block, on loopback: a remote or "
        "durable server costs more per flush, but flushes are batched (512 rows or 5 s).",
        "The workflow answers without escalating to the inbox or an LLM (templates instead), "
        "so that only the ledger differs between conditions; a workflow that calls an LLM "
        "would make the ledger's share smaller still.",
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=100_000, help="part 1 requests")
    parser.add_argument("--texts", type=int, default=2000, help="part 2 texts per condition")
    parser.add_argument("--block", type=int, default=10, help="part 2 texts per block")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--postgres", action="store_true", help="also run on PostgreSQL")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--write-results", action="store_true")
    parser.add_argument("--from-json", type=Path, help="re-render RESULTS.md from a JSON")
    args = parser.parse_args(argv)
    if args.from_json:
        write_section(render(json.loads(args.from_json.read_text(encoding="utf-8"))))
        return 0
    if args.postgres and not os.environ.get(PG_ENV):
        if os.environ.get("SLMSTACK_BENCH_PG"):
            raise SystemExit(f"scripts/test.sh's PostgreSQL block ran but set no ${PG_ENV}")
        return with_postgres(sys.argv[1:] if argv is None else argv)
    server = os.environ.get(PG_ENV) if args.postgres else None

    res: dict[str, Any] = {"when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                           "machine": machine_info(), "argv": sys.argv[1:],
                           "load_start": load()}  # fmt: skip
    t0 = time.perf_counter()
    requests, want = simulate(args.requests, args.seed)
    print(f"simulated {len(requests):,} requests in {time.perf_counter() - t0:.1f} s", flush=True)
    res["exactness"] = []
    pg_urls = []
    with tempfile.TemporaryDirectory(prefix="slmstack-bench-ledger-") as tmp:
        folder = Path(tmp)
        kinds = [("sqlite", f"sqlite:///{folder / 'exact.db'}")]
        if server:
            pg_urls.append(pg_database(server))
            kinds.append(("postgresql", pg_urls[-1]))
        try:
            for kind, url in kinds:
                part = exactness(url, requests, want, kind)
                res["exactness"].append(part)
                print(json.dumps({k: v for k, v in part.items() if k != "groups"}), flush=True)
            del requests
            if not args.skip_overhead:
                if server:
                    pg_urls.append(pg_database(server))
                res["overhead"] = overhead(args.texts, args.block,
                                           pg_urls[-1] if server else None, folder)  # fmt: skip
                print(json.dumps(res["overhead"], indent=1), flush=True)
        finally:
            for url in pg_urls:
                drop_database(url)
    res["load_end"] = load()
    res["machine"]["postgresql"] = PG_VERSION[0] if PG_VERSION else None
    res["caveats"] = caveats(res)
    text = render(res)
    print(text)
    if args.write_results:
        JSON_OUT.parent.mkdir(parents=True, exist_ok=True)
        JSON_OUT.write_text(json.dumps(res, indent=1, default=str) + "\n", encoding="utf-8")
        write_section(text)
    ok = all(p["exact_to_the_cent"] for p in res["exactness"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
