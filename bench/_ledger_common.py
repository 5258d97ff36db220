"""Ledger benchmark (``bench/ledger.py``): settings, prices and flows, the environment.

The machine's description and the PostgreSQL helpers (a database per run, dropped after).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import uuid
from datetime import UTC, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SLMSTACK_PROGRESS", "0")
os.environ.pop("SLMSTACK_PRICES", None)  # the packaged table plus EXTRA_PRICES, nothing else


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
