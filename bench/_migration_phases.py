"""The replay of ``bench/migration.py``: a real ``slmstack proxy`` and the CLI, phase by phase.

The replay (phases 1 to 6: record, discover, distill, shadow, promote, serve) holds the
shared CPU lock from the start of the record phase to the end of the serve phase, once,
rather than queueing for it again before each phase (on a busy machine each wait was
minutes); the reference pass around it takes the lock on its own. The proxy is a
subprocess (``slmstack proxy``, uvicorn), its upstream the caching shim; the CLI commands
(discover, distill, promote, migration report) run as subprocesses too, exactly as a
user types them.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from _llm_process import free_port
from _machine import LOCK
from _migration_app import Request
from _migration_llm import Shim

_HELD: list[Any] = []  # the open lock file while the replay holds the lock


@contextmanager
def cpu_lock() -> Iterator[float]:
    """Take the shared CPU lock once for the replay; it stays held until :func:`release`."""
    waited = 0.0
    if not _HELD:
        fh = open(LOCK, "a")  # noqa: SIM115 (held across phases, closed by release())
        print(f"waiting for {LOCK} (held from here to the end of the serve phase) ...",
              flush=True)  # fmt: skip
        start = time.monotonic()
        fcntl.flock(fh, fcntl.LOCK_EX)
        waited = time.monotonic() - start
        _HELD.append((fh, time.monotonic()))
    yield waited


def release() -> float:
    """Release the replay's CPU lock; the seconds it was held."""
    if not _HELD:
        return 0.0
    fh, since = _HELD.pop()
    fcntl.flock(fh, fcntl.LOCK_UN)
    fh.close()
    return time.monotonic() - since


CLI = [sys.executable, "-c", "from slmstack.cli.app import main; main()"]
HEADER = "x-slmstack-answered-by"


def slmstack(args: list[str], log: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``slmstack ARGS``; its output is appended to ``log``."""
    print("$ slmstack " + " ".join(args), flush=True)
    done = subprocess.run(CLI + args, capture_output=True, text=True)
    with log.open("a", encoding="utf-8") as fh:
        fh.write(
            f"$ slmstack {' '.join(args)}\n(rc {done.returncode})\n{done.stdout}\n{done.stderr}\n"
        )
    if check and done.returncode != 0:
        raise SystemExit(f"slmstack {args[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done


class Proxy:
    """``slmstack proxy`` in a subprocess, for the length of a ``with`` block."""

    def __init__(self, upstream: str, ledger: str, log: Path, extra: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = ["proxy", "--upstream", upstream, "--port", str(self.port), "--ledger", ledger,
                     "--price-as", "gpt-4", *extra]  # fmt: skip
        self.log = log

    def __enter__(self) -> Proxy:
        print("$ slmstack " + " ".join(self.args), flush=True)
        fh = self.log.open("ab")
        self.proc = subprocess.Popen(CLI + self.args, stdout=fh, stderr=subprocess.STDOUT)
        fh.close()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"slmstack proxy exited ({self.proc.returncode}); see {self.log}")
            try:
                httpx.get(self.url + "/healthz", timeout=2).raise_for_status()
                return self
            except httpx.HTTPError:
                time.sleep(0.3)
        raise SystemExit(f"slmstack proxy did not start in 180 s; see {self.log}")

    def health(self) -> dict[str, Any]:
        return dict(httpx.get(self.url + "/healthz", timeout=10).json())

    def wait_recorded(self, n: int, timeout_s: float = 300, strict: bool = True) -> dict[str, Any]:
        """Wait until the recorder has written ``n`` calls (it writes off the request path)."""
        deadline = time.monotonic() + timeout_s
        while True:
            h = self.health()
            if h["recorded"] + h.get("dropped", 0) + h.get("failed", 0) >= n:
                return h
            if time.monotonic() > deadline:
                if not strict:
                    print(f"warning: the proxy recorded {h} of {n} calls in {timeout_s:g} s")
                    return h
                raise SystemExit(f"the proxy recorded {h} of {n} calls in {timeout_s:g} s")
            time.sleep(0.5)

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def send(client: httpx.Client, url: str, r: Request) -> dict[str, Any]:
    """POST one call; its answer text, who answered, and the wall time."""
    start = time.perf_counter()
    resp = client.post(url + "/v1/chat/completions", json=r.body)
    ms = (time.perf_counter() - start) * 1000
    resp.raise_for_status()
    data = resp.json()
    return {"i": r.i, "kind": r.kind, "ms": ms, "by": resp.headers.get(HEADER, "?"),
            "content": data["choices"][0]["message"]["content"] or "",
            "usage": data.get("usage") or {}}  # fmt: skip


def record(reqs: list[Request], upstream: str, ledger: str, out: Path,
           shim: Shim | None = None) -> dict[str, Any]:  # fmt: skip
    """Phase 1: the calls through a recording proxy; each also sent straight to the shim.

    The shim answers both from its cache at once, so the two wall times differ by the
    proxy's own cost; the order of the two alternates call by call.
    """
    shim_base = upstream.removesuffix("/v1")
    timed: dict[str, list[float]] = {"proxy": [], "direct": []}
    with cpu_lock(), Proxy(upstream, ledger, out / "proxy.log", []) as proxy:
        with httpx.Client(timeout=600) as client:
            for k, r in enumerate(reqs):
                pair = [("proxy", proxy.url), ("direct", shim_base)]
                for name, base in pair if k % 2 == 0 else pair[::-1]:
                    if shim is not None:
                        shim.phase = "record" if name == "proxy" else "record-direct"
                    timed[name].append(send(client, base, r)["ms"])
        health = proxy.wait_recorded(len(reqs))
    return {"calls": len(reqs), "health": health, "ms": timed}


def discover(ledger: str, reqs: list[Request], out: Path) -> dict[str, Any]:
    """Phase 2: ``slmstack discover --json --members``, checked against the truth."""
    done = slmstack(["discover", "--ledger", ledger, "--json", "--members"], out / "cli.log")
    found = json.loads(done.stdout)
    (out / "tasks.json").write_text(json.dumps(found, indent=1))
    kind_of = dict(_user_kinds(ledger, reqs))
    truth = Counter(kind_of.values())
    tasks = []
    for t in found["tasks"]:
        kinds = Counter(kind_of.get(rid, "?") for rid in t.get("request_ids", []))
        tasks.append({"task_id": t["task_id"], "kind": t["kind"], "requests": t["requests"],
                      "members_by_true_kind": dict(kinds), "n_labels": len(t["labels"]),
                      "schema": t["schema"], "template": t["template"][:120] + "…"})  # fmt: skip
    pure = all(len(t["members_by_true_kind"]) == 1 for t in tasks)
    whole = {k: sum(1 for t in tasks if k in t["members_by_true_kind"]) for k in truth}
    ok = pure and all(v == 1 for v in whole.values()) and len(tasks) == len(truth)
    print(f"discover: {len(tasks)} tasks; no false merge: {pure}; each true task in one: "
          f"{whole}; pass: {ok}", flush=True)  # fmt: skip
    by_kind = {}
    for t in tasks:
        if len(t["members_by_true_kind"]) == 1:
            by_kind[next(iter(t["members_by_true_kind"]))] = t["task_id"]
    return {"tasks": tasks, "true_requests": dict(truth), "no_false_merge": pure,
            "each_true_task_whole": whole, "pass": ok, "task_of_kind": by_kind}  # fmt: skip


def _user_kinds(ledger: str, reqs: list[Request]) -> list[tuple[str, str]]:
    """``(request_id, true kind)`` of each recorded call, matched by its user message."""
    kind_by_user = {r.body["messages"][-1]["content"]: r.kind for r in reqs}
    with sqlite3.connect(ledger.removeprefix("sqlite:///")) as db:
        rows = db.execute("SELECT request_id, user FROM slmstack_traffic").fetchall()
    return [(rid, kind_by_user.get(user, "?")) for rid, user in rows]


def replay(reqs: list[Request], upstream: str, ledger: str, out: Path, shim: Shim,
           phase: str, extra: list[str], settle_s: float = 0.0) -> dict[str, Any]:  # fmt: skip
    """Phases 4 and 6: the calls through a proxy started with ``extra`` options."""
    shim.phase = phase
    answers = []
    with cpu_lock(), Proxy(upstream, ledger, out / "proxy.log", extra) as proxy:
        with httpx.Client(timeout=600) as client:
            for r in reqs:
                answers.append(send(client, proxy.url, r))
        time.sleep(settle_s)  # background audits and the recorder's last batch
        health = proxy.wait_recorded(len(answers), timeout_s=60, strict=False)
    shim.phase = "-"
    if phase == "serve":
        print(f"replay held the CPU lock {release():.0f} s", flush=True)
    print(f"{phase}: {len(answers)} calls, answered by {Counter(a['by'] for a in answers)}",
          flush=True)  # fmt: skip
    return {"answers": answers, "health": health}


def shadow_flags(tasks_file: Path, students: dict[str, Path]) -> list[str]:
    flags = ["--tasks", str(tasks_file)]
    for task_id, folder in students.items():
        flags += ["--shadow", f"{task_id}={folder}"]
    return flags


def db_rows(ledger: str, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(ledger.removeprefix("sqlite:///")) as db:
        return db.execute(sql).fetchall()


def fresh_ledger(path: Path) -> str:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return f"sqlite:///{path}"


def env_note() -> dict[str, str]:
    return {k: os.environ.get(k, "") for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}


def distill(found: dict[str, Any], ledger: str, tasks_file: Path, out: Path) -> dict[str, Any]:
    """Phase 3: ``slmstack distill --task T`` for each discovered task (the kind's default)."""
    folders: dict[str, Path] = {}
    reports: dict[str, Any] = {}
    with cpu_lock():
        for t in found["tasks"]:
            folder = out / "students" / t["task_id"]
            start = time.monotonic()
            done = slmstack(["distill", "--task", t["task_id"], "--ledger", ledger, "--tasks",
                             str(tasks_file), "--out", str(folder), "--held-out", "0.1",
                             "--force", "--json"],
                            out / "cli.log", check=False)  # fmt: skip
            wall = round(time.monotonic() - start, 1)
            if done.returncode != 0:
                reports[t["task_id"]] = {"rc": done.returncode, "error": done.stderr[-1500:]}
                print(f"distill {t['task_id']} failed: {done.stderr[-400:]}", flush=True)
                continue
            try:
                reports[t["task_id"]] = {**json.loads(done.stdout), "wall_s": wall}
            except ValueError:
                reports[t["task_id"]] = {"stdout": done.stdout[-1500:], "wall_s": wall}
            folders[t["task_id"]] = folder
    return {"folders": folders, "reports": reports}


def promote(folders: dict[str, Path], ledger: str, out: Path, args: Any) -> dict[str, Any]:
    """Phase 5: ``slmstack promote --task T`` (the gate; the threshold tuned on shadow rows)."""
    decisions = {}
    for task_id in folders:
        done = slmstack(["promote", "--task", task_id, "--ledger", ledger, "--json",
                         *args.promote_flags], out / "cli.log", check=False)  # fmt: skip
        try:
            decisions[task_id] = json.loads(done.stdout)
        except ValueError:
            decisions[task_id] = {"rc": done.returncode, "stderr": done.stderr[-1500:]}
        print(f"promote {task_id}: {decisions[task_id]}", flush=True)
    return decisions


def serve_flags(args: Any) -> list[str]:
    """The serving options of the proxy (H1's defaults unless the run names some)."""
    return list(args.serve_flags)
