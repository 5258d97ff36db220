"""Ledger benchmark, part 1: 100k simulated requests written and summed, checked to the cent."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from importlib import resources
from typing import Any

import yaml

from _ledger_common import (
    CENT,
    EXTRA_PRICES,
    FLOWS,
    ZONES,
    load,
)

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
