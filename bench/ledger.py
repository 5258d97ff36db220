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

Files: this one runs part 2 and the whole; ``_ledger_common.py`` holds the settings and
the PostgreSQL helpers, ``_ledger_exactness.py`` part 1, ``_ledger_report.py`` the section.

Run (heavy: hold the shared CPU lock; ``--postgres`` starts a throwaway PostgreSQL with
scripts/test.sh's own shell block unless $SLMSTACK_TEST_PG_URL names a server)::

    flock /tmp/slmstack-cpu.lock .venv/bin/python bench/ledger.py --postgres --write-results
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _ledger_common import (
    DESK,
    JSON_OUT,
    PG_ENV,
    PG_VERSION,
    drop_database,
    load,
    machine_info,
    pg_database,
    with_postgres,
)
from _ledger_exactness import (
    exactness,
    simulate,
)
from _ledger_report import (
    caveats,
    render,
    write_section,
)

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
