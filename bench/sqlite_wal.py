"""SQLite in write-ahead-log mode against the rollback journal, for the inbox and the ledger.

Two measurements, each for both journal modes in the same run (``SLMSTACK_SQLITE_WAL`` 1
and 0, the product's own switch; ``slmstack.sqlite_files``), in alternating rounds so that
both see the same disk and load:

1. **Filing an escalation packet**: ``Inbox.add`` of one packet (its own commit, with full
   sync in both modes), 5 rounds of 200 packets per mode after 20 untimed; the p50 and p99
   over the pooled rounds, and each round's p50.
2. **Reading while a writer holds the file**: another connection opens ``BEGIN
   EXCLUSIVE`` on the ledger and deletes every row (as a writer in the middle of a big
   transaction), releases it 300 ms later; a reader in this process calls
   ``Ledger(url, create=False).rows()`` meanwhile. Reported: how long the read took and
   how many rows it saw (the last committed state has 50). 5 tries per mode.

Nothing here needs ``../shared``; it writes ``bench/results/sqlite_wal.json``::

    flock /tmp/slmstack-cpu.lock nice -n 5 .venv/bin/python bench/sqlite_wal.py
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

OUT = Path(__file__).resolve().parent / "results" / "sqlite_wal.json"
ROUNDS, PER_ROUND, HOLD_S = 5, 200, 0.3


def _mode(wal: bool) -> str:
    os.environ["SLMSTACK_SQLITE_WAL"] = "1" if wal else "0"
    return "wal" if wal else "rollback"


def filing(folder: Path) -> dict[str, Any]:
    from slmstack.workflows import Inbox
    from slmstack.workflows.inbox import Packet

    times: dict[str, list[list[float]]] = {"wal": [], "rollback": []}
    inboxes = {}
    for wal in (True, False):
        name = _mode(wal)
        inboxes[name] = Inbox(f"sqlite:///{folder / f'inbox-{name}.db'}")
        journal = sqlite3.connect(folder / f"inbox-{name}.db").execute("PRAGMA journal_mode")
        assert journal.fetchone()[0] == ("wal" if wal else "delete")
    n = 0
    for _ in range(ROUNDS):
        for name, inbox in inboxes.items():
            took = []
            for i in range(PER_ROUND + 20):
                n += 1
                text = f"my card was charged twice ({n})"
                packet = Packet("desk", text, "complaint", "negative", key=f"k{n}")
                start = time.perf_counter()
                inbox.add(packet)
                if i >= 20:
                    took.append((time.perf_counter() - start) * 1000)
            times[name].append(took)
    out: dict[str, Any] = {}
    for name, rounds in times.items():
        pooled = sorted(v for r in rounds for v in r)
        out[name] = {
            "p50_ms": round(statistics.median(pooled), 3),
            "p99_ms": round(pooled[int(0.99 * len(pooled))], 3),
            "round_p50_ms": [round(statistics.median(r), 3) for r in rounds],
        }
    out["rollback_over_wal_p50"] = round(out["rollback"]["p50_ms"] / out["wal"]["p50_ms"], 2)
    return out


def reading(folder: Path, tries: int = 5) -> dict[str, Any]:
    from slmstack.costs import Ledger, LedgerRow

    out: dict[str, Any] = {}
    for wal in (True, False):
        name = _mode(wal)
        url = f"sqlite:///{folder / f'ledger-{name}.db'}"
        with Ledger(url) as ledger:
            at = datetime.now(UTC)
            ledger.append([LedgerRow(f"r{i}", "", "desk", "", "run", at) for i in range(50)])
        runs = []
        for _ in range(tries):
            holder = sqlite3.connect(
                folder / f"ledger-{name}.db", isolation_level=None, check_same_thread=False
            )  # released by the timer
            holder.execute("BEGIN EXCLUSIVE")
            holder.execute("DELETE FROM slmstack_ledger")
            release = threading.Timer(HOLD_S, lambda h=holder: h.execute("ROLLBACK"))
            release.start()
            start = time.perf_counter()
            try:
                seen = len(Ledger(url, create=False).rows())
                error = None
            except Exception as exc:  # what a reader would see, recorded
                seen, error = -1, f"{type(exc).__name__}: {exc}"[:200]
            took = (time.perf_counter() - start) * 1000
            release.join()
            holder.close()
            runs.append({"read_ms": round(took, 1), "rows_seen": seen, "error": error})
        out[name] = {
            "read_ms_median": statistics.median(r["read_ms"] for r in runs),
            "rows_seen": sorted({r["rows_seen"] for r in runs}),
            "tries": runs,
        }
    out["writer_holds_ms"] = HOLD_S * 1000
    return out


def filesystem(folder: Path) -> str:
    """The type of the filesystem ``folder`` is on (from /proc/mounts), e.g. ``ext4``."""
    best, kind = "", "unknown"
    for line in Path("/proc/mounts").read_text().splitlines():
        _, point, fstype, *_ = line.split()
        if str(folder).startswith(point) and len(point) > len(best):
            best, kind = point, fstype
    return kind


def main() -> None:
    from _machine import machine, scratch

    folder = scratch("sqlite-wal-")
    result = {
        "filing_one_packet": filing(folder),
        "read_while_a_writer_holds_the_file": reading(folder),
        "folder": str(folder),
        "filesystem": filesystem(folder),
        "machine": machine(),
        "command": "flock /tmp/slmstack-cpu.lock nice -n 5 .venv/bin/python bench/sqlite_wal.py",
    }
    print(json.dumps(result, indent=1))
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
