"""Batch jobs (`slmstack batch`): inputs, resume, errors, and the local and Ray engines.

The workflow is a LanguageDetector (a registered skill, so Ray workers and spawned
processes find it) routing German to an escalation (an inbox packet) and the rest to a
template; it runs in milliseconds. One local Ray instance serves every Ray test.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slmstack.batchjob import (
    JobSpec,
    LocalEngine,
    RayEngine,
    Row,
    RowRunner,
    Sink,
    read_rows,
    row_key,
    run_job,
)
from slmstack.cli.app import app
from slmstack.errors import ConfigError, DataError, JobStopped, MissingDependencyError
from slmstack.types import Prediction
from slmstack.workflows import (
    CascadeStep,
    EscalateStep,
    SkillStep,
    TemplateStep,
    Workflow,
    run_batch,
)
from workflow_doubles import Fixed, FlakyBackend, KeywordClassifier

LANGS = "text,label\n" + "\n".join(
    [
        "where is my parcel,en",
        "I want a refund for my order,en",
        "the router does not work,en",
        "how do I reset my password,en",
        "wo ist mein Paket,de",
        "ich möchte mein Geld zurück,de",
        "der Router funktioniert nicht,de",
        "wie setze ich mein Passwort zurück,de",
    ]
)
EN = ["where is my parcel {}", "my order {} never arrived", "please reset my password now {}"]
DE = ["wo ist mein Paket {}", "meine Bestellung {} ist nicht angekommen"]


def texts(n: int) -> list[str]:
    return [(DE if i % 4 == 0 else EN)[i % 2].format(i) for i in range(n)]


@pytest.fixture
def job(tmp_path):
    """A workflow file (inbox and ledger in tmp_path) and a JSONL input of 40 rows."""
    (tmp_path / "langs.csv").write_text(LANGS, encoding="utf-8")
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        textwrap.dedent(
            """\
            name: desk
            inbox: sqlite:///inbox.db
            ledger: sqlite:///ledger.db
            skills:
              lang: {kind: slmstack.LanguageDetector.v1, train: langs.csv}
            steps:
              - route:
                  skill: lang
                  branches:
                    de:
                      - escalate: {reason: german, message: Danke!}
                  default:
                    - template: "answer: {input}"
            """
        )
    )
    data = tmp_path / "in.jsonl"
    lines = [json.dumps({"text": t}) for t in texts(40)]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return wf, data


def results(path: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    out = {r["id"]: r for r in rows}
    assert len(out) == len(rows), "a row was written twice"
    return out


def comparable(value):
    """A result without what differs run to run: latencies and inbox packet ids."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in ("latency_ms", "packet_id")}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def count(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def assert_exactly_once(folder: Path, ids: set[str], n_german: int) -> None:
    keys = [k for (k,) in count(folder / "inbox.db", "select key from slmstack_packets")]
    assert len(keys) == len(set(keys)) == n_german
    runs = count(folder / "ledger.db", "select request_id from slmstack_ledger where kind='run'")
    assert len(runs) == len({r for (r,) in runs}) == len(ids)


# ---------------------------------------------------------------------------- inputs
def test_inputs_give_stable_ids_and_bad_rows_become_errors(tmp_path):
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.txt").write_text("first document")
    (tmp_path / "docs" / "sub" / "b.md").write_text("second document")
    (tmp_path / "docs" / ".hidden").write_text("skipped")
    (tmp_path / "docs" / "bad.txt").write_bytes(b"caf\xe9")
    (tmp_path / "docs" / "t.jsonl").write_text('{"text": "one"}\n\n"two"\nnot json\n{"x": 1}\n')
    (tmp_path / "docs" / "t.csv").write_text('text,n\nhello,1\n"multi\nline",2\nshort\n')
    rows = {r.id: r for r in read_rows(tmp_path / "docs")}
    assert {k: v.text for k, v in rows.items() if not v.error} == {
        "a.txt": "first document",
        "sub/b.md": "second document",
        "t.jsonl:1": "one",
        "t.jsonl:3": "two",
        "t.csv:2": "hello",
        "t.csv:3": "multi\nline",
    }
    assert "not valid JSON" in rows["t.jsonl:4"].error
    assert "'text'" in rows["t.jsonl:5"].error
    assert "1 fields" in rows["t.csv:5"].error
    assert "not UTF-8" in rows["bad.txt"].error
    # A glob names files relative to its fixed part.
    assert [r.id for r in read_rows(str(tmp_path / "docs" / "**" / "*.md"))] == ["sub/b.md"]


def test_inputs_parquet_and_whole_file_problems(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["x", None, "z"]}), tmp_path / "t.parquet")
    rows = read_rows(tmp_path / "t.parquet", text_field="body")
    assert [(r.id, r.text, bool(r.error)) for r in rows] == [
        ("t.parquet:1", "x", False),
        ("t.parquet:2", "", True),
        ("t.parquet:3", "z", False),
    ]
    with pytest.raises(DataError, match="no column 'text'.*--text-field"):
        read_rows(tmp_path / "t.parquet")
    with pytest.raises(DataError, match="no such file, folder or glob"):
        read_rows(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="matches no files"):
        read_rows(str(tmp_path / "*.nothing"))


def test_long_ids_still_give_short_keys():
    key = row_key("j", Row("d/" * 200, "text"))
    assert len(key) <= 200
    assert key != row_key("j", Row("d/" * 201, "text"))
    assert row_key("j", Row("a", "x")) != row_key("j", Row("a", "y"))


# ---------------------------------------------------------------------------- runner
class Boom(KeywordClassifier):
    def predict(self, texts):
        if any("boom" in t for t in texts):
            raise ValueError("cannot read 'boom'")
        return super().predict(texts)


def test_a_bad_row_fails_alone_and_the_batch_goes_on(tmp_path):
    wf = Workflow(
        [SkillStep("intent"), TemplateStep("ok")],
        skills={"intent": Boom({"faq": 0.9})},
        ledger=f"sqlite:///{tmp_path / 'ledger.db'}",
    )
    runner = RowRunner(JobSpec(tmp_path / "unused.yaml", job="j"), load=lambda: wf)
    rows = [Row("f:1", "faq one"), Row("f:2", "boom"), Row("f:3", "raw", "not valid JSON")]
    outcomes = runner(rows)
    assert [(o.id, o.ok) for o in outcomes] == [("f:1", True), ("f:2", False), ("f:3", False)]
    failed = json.loads(outcomes[1].line)
    assert failed == {
        "id": "f:2",
        "input": "boom",
        "stage": "workflow",
        "error": "ValueError: cannot read 'boom'",
    }
    assert json.loads(outcomes[2].line)["stage"] == "input"
    # The ledger is flushed before the rows are handed back: one run row, already stored.
    assert count(
        tmp_path / "ledger.db", "select count(*) from slmstack_ledger where kind='run'"
    ) == [(1,)]


def test_a_batch_sunk_by_an_llm_timeout_re_pays_none_of_its_answered_calls(tmp_path):
    # The LLM timed out on item 40 of 64: the row-by-row retry asked the 39 answered again
    # (104 paid calls for 64 rows), and the ledger held only the second payment.
    llm = FlakyBackend(fail_on=40)
    wf = Workflow(
        [CascadeStep([SkillStep("intent"), EscalateStep("unsure", to="llm")], threshold=0.5)],
        skills={"intent": KeywordClassifier({"faq": 0.9})},
        backends={"llm": llm},
        ledger=f"sqlite:///{tmp_path / 'ledger.db'}",
    )
    runner = RowRunner(JobSpec(tmp_path / "unused.yaml", job="j"), load=lambda: wf)
    outcomes = runner([Row(f"f:{i}", f"unclear {i}") for i in range(64)])
    assert all(o.ok for o in outcomes)
    assert llm.calls == 64 + 1, "each row's LLM call is paid once; the timed-out one twice"
    sql = "select count(*), sum(tokens_in) from slmstack_ledger where kind='escalate'"
    assert count(tmp_path / "ledger.db", sql) == [(64, 64 * 11)]


def test_output_lines_are_strict_json_when_a_skill_gives_nan(tmp_path):
    # A NaN confidence is judged by the cascade (not confident): the trace's decision wrote
    # it as NaN, and a NaN or inf in a skill's data too, which strict JSON readers refuse.
    nan = Prediction(label="x", confidence=float("nan"), data={"p": float("inf"), "s": [1.0]})
    wf = Workflow(
        [CascadeStep([SkillStep("intent"), TemplateStep("fallback")], threshold=0.5)],
        skills={"intent": Fixed(nan)},
    )
    runner = RowRunner(JobSpec(tmp_path / "unused.yaml", job="j", trace=True), load=lambda: wf)
    src = tmp_path / "in.txt"
    src.write_text("hello\n")
    run_batch(wf, src, tmp_path / "out.jsonl", trace=True)
    lines = [runner([Row("f:1", "hello")])[0].line, (tmp_path / "out.jsonl").read_text()]

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    for line in lines:
        row = json.loads(line, parse_constant=refuse)
        assert row["outputs"]["intent"]["data"] == {"p": None, "s": [1.0]}
        assert row["trace"][0]["children"][0]["decision"]["confidence"] is None


def test_rows_that_keep_failing_stop_the_job_and_a_missing_package_stops_it_at_once(
    tmp_path, monkeypatch
):
    import slmstack.batchjob.runner as runner_module

    monkeypatch.setattr(runner_module, "FAILURES_IN_A_ROW", 3)
    wf = Workflow([SkillStep("intent"), TemplateStep("ok")], skills={"intent": Boom({"faq": 0.9})})
    runner = RowRunner(JobSpec(tmp_path / "unused.yaml", job="j"), load=lambda: wf)
    # two failures, then a success resets the count, so this batch goes through
    rows = [Row("f:1", "boom"), Row("f:2", "boom"), Row("f:3", "faq"), Row("f:4", "boom")]
    assert [o.ok for o in runner(rows)] == [False, False, True, False]
    # with the one before, f:5 and f:6 make three in a row: the job stops, naming the last
    with pytest.raises(JobStopped, match=r"3 rows failed in a row, the last \(f:6\).*resume"):
        runner([Row("f:5", "boom"), Row("f:6", "boom"), Row("f:7", "faq")])

    class NoPackage(KeywordClassifier):
        def predict(self, texts):
            raise MissingDependencyError("spacy", "ner", "Tagging")

    wf = Workflow([SkillStep("intent")], skills={"intent": NoPackage({"faq": 0.9})})
    runner = RowRunner(JobSpec(tmp_path / "unused.yaml", job="j"), load=lambda: wf)
    with pytest.raises(MissingDependencyError):
        runner([Row("f:1", "faq")])


def test_the_job_threads_reach_exported_onnx_skills(tmp_path, monkeypatch):
    # --threads (by default the cores divided among the workers) set torch's threads only:
    # an exported skill's onnxruntime session took every core in each worker process, so
    # N workers ran N times as many threads as cores. The count now reaches the sessions
    # as they load, unless the operator set SLMSTACK_ONNX_THREADS.
    from slmstack.models.onnx_runtime import THREADS_ENV, default_threads

    monkeypatch.setenv(THREADS_ENV, "1")
    monkeypatch.delenv(THREADS_ENV)  # unset here, and unset again after the test
    seen: list[int] = []
    wf = Workflow([SkillStep("intent")], skills={"intent": KeywordClassifier({"faq": 0.9})})

    def load() -> Workflow:
        seen.append(default_threads())  # what a session opened while loading would get
        return wf

    cores = default_threads()
    RowRunner(JobSpec(tmp_path / "unused.yaml", job="j", threads=cores + 2), load=load)
    monkeypatch.setenv(THREADS_ENV, "5")  # the operator's own setting wins
    RowRunner(JobSpec(tmp_path / "unused.yaml", job="j", threads=cores + 2), load=load)
    assert seen == [cores + 2, 5]


def test_sink_resumes_truncates_a_torn_line_and_refuses_another_input(tmp_path):
    out, err = tmp_path / "out.jsonl", tmp_path / "out.errors.jsonl"
    out.write_text('{"id": "a", "input": "x"}\n{"id": "b", "inp')
    err.write_text('{"id": "c", "input": "z", "error": "bad"}\n')
    inputs = {"a": "x", "b": "y", "c": "z"}
    with Sink(out, err, inputs) as sink:
        assert sink.done == {"a", "c"}
    assert out.read_text() == '{"id": "a", "input": "x"}\n'
    with Sink(out, err, inputs, retry_errors=True) as sink:
        assert sink.done == {"a"}
    with pytest.raises(DataError, match="another input.*--restart"):
        Sink(out, err, {"a": "other"}).__enter__()
    # a failed row fixed in the input: run it again, rather than --restart every row
    err.write_text('{"id": "c", "input": "z", "error": "bad"}\n')
    with pytest.raises(DataError, match=r"out.errors.jsonl.*changed.*--retry-errors") as caught:
        Sink(out, err, {**inputs, "c": "z, fixed"}).__enter__()
    assert "--restart" not in str(caught.value)
    with Sink(out, err, {**inputs, "c": "z, fixed"}, retry_errors=True) as sink:
        assert sink.done == {"a"}
    with Sink(out, err, inputs), pytest.raises(DataError, match="locked"):
        Sink(out, err, inputs).__enter__()


def test_sink_resumes_after_a_kill_inside_the_first_line(tmp_path):
    # A whole document is the first row's input: a kill while writing it leaves a torn
    # first line, which is a write cut short (run again), not a file of another program.
    out, err = tmp_path / "out.jsonl", tmp_path / "out.errors.jsonl"
    out.write_text('{"id": "doc.txt", "input": "a very long docu')
    with Sink(out, err, {"doc.txt": "a very long document"}) as sink:
        assert sink.done == set()
    assert out.read_text() == ""
    notes = tmp_path / "notes.jsonl"  # no result row at all: refused and kept
    notes.write_text('{"note": "mine')
    with pytest.raises(DataError, match="not a result row"):
        Sink(notes, err, {}).__enter__()
    assert notes.read_text() == '{"note": "mine'


# ---------------------------------------------------------------------------- local engine
def test_local_job_writes_every_row_once_and_resumes(job, tmp_path):
    wf, data = job
    with data.open("a") as fh:
        fh.write("not json\n")
    out = tmp_path / "out.jsonl"
    summary = run_job(wf, data, out, workers=2, batch_size=8)
    assert (summary.total, summary.processed, summary.failed) == (41, 41, 1)
    got = results(out)
    assert len(got) == 40
    assert got["in.jsonl:1"]["status"] == "escalated"  # German
    assert got["in.jsonl:2"]["answer"] == "answer: my order 1 never arrived"
    errors = results(tmp_path / "out.errors.jsonl")
    assert list(errors) == ["in.jsonl:41"]
    assert_exactly_once(tmp_path, set(got), n_german=10)
    again = run_job(wf, data, out, workers=1)
    assert (again.already_done, again.processed) == (41, 0)
    before = data.read_bytes()
    with pytest.raises(DataError, match="one of the input files"):
        run_job(wf, data.parent, data.parent / "in.jsonl", restart=True)
    assert data.read_bytes() == before
    # an output the next run would read as input: refused on the first run already
    with pytest.raises(DataError, match="inside the input folder or glob"):
        run_job(wf, data.parent, data.parent / "new-out.jsonl")
    # A workflow whose steps changed since the output started: its rows would mix two
    # workflows' results (they were resumed silently); refused, naming the fixes.
    spec = wf.read_text()
    wf.write_text(spec.replace("answer: {input}", "reply: {input}"))
    with pytest.raises(DataError, match=r"workflow .*wf.yaml changed.*Put the workflow back.*--restart"):
        run_job(wf, data, out, workers=1)
    wf.write_text(spec.replace("name: desk", "name: desk\n# a comment\ndescription: x"))
    assert run_job(wf, data, out, workers=1).already_done == 41  # no result changes
    with pytest.raises(DataError, match="inside the input folder or glob"):
        run_job(wf, str(data.parent / "*"), data.parent / "new-out.jsonl")
    assert not (data.parent / "new-out.jsonl").exists()
    # the errors file is the one named, with its flag (the output was named instead)
    with pytest.raises(DataError, match=r"in\.jsonl: is one of the input files.*--errors"):
        run_job(wf, data, tmp_path / "other.jsonl", errors_path=data)
    assert data.read_bytes() == before


def _batch_cli(wf: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-c", "from slmstack.cli.app import main; main()",
        "batch", str(wf), "--input", str(data), "--output", str(out), *extra,
    ]  # fmt: skip


def test_a_killed_job_resumes_with_no_duplicates_and_no_gaps(job, tmp_path):
    wf, data = job
    lines = [json.dumps({"text": t}) for t in texts(400)]
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    cmd = _batch_cli(wf, data, out, "--workers", "2", "--batch-size", "4")
    env = {**os.environ, "SLMSTACK_PROGRESS": "0"}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 40:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-job
    proc.wait()
    written = out.read_text().count("\n")
    assert 0 < written < 400
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    assert "already done" in done.stdout
    got = results(out)  # fails on a duplicate
    assert set(got) == {f"in.jsonl:{i}" for i in range(1, 401)}
    assert_exactly_once(tmp_path, set(got), n_german=100)


def test_a_killed_local_worker_is_replaced(job, tmp_path):
    wf, data = job
    data.write_text("\n".join(json.dumps({"text": t}) for t in texts(400)) + "\n")
    out = tmp_path / "out.jsonl"
    killed = _kill_one_worker_when(out, lambda p: "spawn_main" in " ".join(p.cmdline()))
    summary = run_job(wf, data, out, workers=2, batch_size=4)
    assert killed.is_set(), "no worker was killed"
    assert summary.processed == 400 and summary.failed == 0
    assert len(results(out)) == 400
    assert_exactly_once(tmp_path, set(results(out)), n_german=100)


def _kill_one_worker_when(out: Path, is_worker) -> threading.Event:
    """Kill one child process matching ``is_worker`` once ``out`` has some rows."""
    import psutil

    killed = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed.is_set():
            if out.exists() and out.read_text().count("\n") >= 20:
                for child in psutil.Process().children(recursive=True):
                    try:
                        if is_worker(child):
                            child.kill()
                            killed.set()
                            return
                    except psutil.Error:
                        continue
            time.sleep(0.02)

    threading.Thread(target=watch, daemon=True).start()
    return killed


def test_cli_batch_reports_and_refuses_bad_options(job, tmp_path):
    wf, data = job
    out = tmp_path / "out.jsonl"
    runner = CliRunner()
    res = runner.invoke(app, ["batch", str(wf), "--input", str(data), "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert "40 rows run" in res.output
    res = runner.invoke(
        app, ["batch", str(wf), "--input", str(data), "--output", str(out), "--engine", "spark"]
    )
    assert res.exit_code == 2
    assert "unknown batch engine 'spark'" in res.output
    res = runner.invoke(
        app,
        ["batch", str(wf), "--input", str(data), "--output", str(out), "--ray-address", "x:1"],
    )
    assert res.exit_code == 2
    assert "--ray-address goes with --engine ray" in res.output
    res = runner.invoke(  # every row unusable (wrong field): not a success
        app,
        ["batch", str(wf), "--input", str(data), "--output", str(tmp_path / "none.jsonl"),
         "--text-field", "body"],
    )  # fmt: skip
    assert res.exit_code == 1 and "40 rows failed" in res.output


# ---------------------------------------------------------------------------- ray engine
# `ray_instance` (conftest.py): one local Ray for the session, shared with the serve tests.


def test_ray_and_local_engines_give_identical_outputs(ray_instance, job, tmp_path):
    wf, data = job
    local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    # batch 2: 20 batches, so Ray Data blocks of 2 batches each (see _batches_per_block)
    run_job(wf, data, local, workers=2, batch_size=2, inbox=f"sqlite:///{tmp_path / 'i1.db'}")
    summary = run_job(
        wf, data, remote, engine="ray", workers=2, batch_size=2,
        inbox=f"sqlite:///{tmp_path / 'i2.db'}",
    )  # fmt: skip
    assert summary.processed == 40
    a, b = results(local), results(remote)
    assert set(a) == set(b)
    assert {k: comparable(v) for k, v in a.items()} == {k: comparable(v) for k, v in b.items()}
    assert count(tmp_path / "i2.db", "select count(*) from slmstack_packets") == [(10,)]


def test_a_killed_ray_actor_is_restarted_and_the_job_completes(ray_instance, job, tmp_path):
    wf, data = job
    data.write_text("\n".join(json.dumps({"text": t}) for t in texts(400)) + "\n")
    out = tmp_path / "out.jsonl"
    killed = _kill_one_worker_when(
        out, lambda p: "_WorkflowActor" in " ".join(p.cmdline()) or "MapWorker" in p.name()
    )
    summary = run_job(wf, data, out, engine="ray", workers=2, batch_size=4)
    assert killed.is_set(), "no actor was killed"
    assert summary.processed == 400 and summary.failed == 0
    got = results(out)
    assert len(got) == 400
    assert_exactly_once(tmp_path, set(got), n_german=100)


def test_a_ray_job_stops_with_the_workers_own_error_as_the_local_engine_does(
    ray_instance, job, tmp_path
):
    """A worker's error (rows that keep failing, a workflow a node cannot load) stops the
    job as itself, with its advice, on either engine: not as Ray's wrapper around the
    worker's stack trace."""
    wf, data = job
    with pytest.raises(ConfigError, match="^workflow file .* does not exist"):  # in the actor
        list(RayEngine().map(JobSpec(tmp_path / "gone.yaml", job="j"), [Row("a", "x")], 1))
    data.write_text("".join(json.dumps({"text": f"wo ist mein Paket {i}"}) + "\n" for i in range(60)))
    with sqlite3.connect(tmp_path / "inbox.db") as conn:  # every escalation fails to file
        conn.execute("create table slmstack_packets (id integer primary key)")
    for engine in ("local", "ray"):
        with pytest.raises(JobStopped, match=r"^\d+ rows failed in a row, the last"):
            run_job(wf, data, tmp_path / f"{engine}.jsonl", engine=engine, workers=2, batch_size=8)


_CPUS_BACK = """
import sys, time
import ray
from slmstack.batchjob import run_job
from slmstack.errors import JobStopped

wf, data, out = sys.argv[1:4]
ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
try:
    run_job(wf, data, out, engine="ray", workers=1, batch_size=8, threads=2)
except JobStopped:
    pass
t = time.monotonic()
while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < t + 10:
    time.sleep(0.1)
print("CPUs free:", ray.available_resources().get("CPU", 0))
"""


def test_a_failed_ray_job_gives_its_cpus_back_at_once(ray_instance, job, tmp_path):
    """The failed job's actor holds every core (2 threads on 2 CPUs). It used to stay
    alive in a reference cycle until the garbage collector next ran (over 20 s here),
    so that the next job in the same process waited for CPUs. Run in a process of its
    own: pytest's log capture keeps the error's frames alive, as a plain process does not.
    """
    wf, data = job
    data.write_text("".join(json.dumps({"text": f"wo ist mein Paket {i}"}) + "\n" for i in range(30)))
    with sqlite3.connect(tmp_path / "inbox.db") as conn:  # every escalation fails to file
        conn.execute("create table slmstack_packets (id integer primary key)")
    args = [sys.executable, "-c", _CPUS_BACK, str(wf), str(data), str(tmp_path / "out.jsonl")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "CPUs free: 2.0" in done.stdout, done.stdout + done.stderr[-3000:]


def test_ray_blocks_hold_whole_batches_and_keep_every_actor_busy():
    from slmstack.batchjob.ray_engine import _batches_per_block

    assert _batches_per_block(40, 2, 2) == 2  # 20 batches, at least 4 blocks per worker
    assert _batches_per_block(20_000, 64, 2) == 8  # capped at 8 batches per block
    assert _batches_per_block(40, 8, 2) == 1  # too few batches to group
    assert _batches_per_block(0, 64, 1) == 1


def test_ray_engine_without_ray_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if `ray` were not installed
    with pytest.raises(MissingDependencyError, match=r"slmstack\[ray\]"):
        RayEngine(workers=1)
    with pytest.raises(ConfigError, match="--workers must be at least 1; got 0"):
        RayEngine(workers=0)
    with pytest.raises(ConfigError, match="--workers must be at least 1; got 0"):
        LocalEngine(workers=0)


def test_cli_joins_a_cluster_by_address_and_resumes(ray_instance, job, tmp_path):
    wf, data = job
    out = tmp_path / "out.jsonl"
    done = [json.dumps({"id": f"in.jsonl:{i + 1}", "input": t}) for i, t in enumerate(texts(10))]
    out.write_text("\n".join(done) + '\n{"id": "in.jsonl:11", "inp')  # killed mid-write
    address = ray_instance.get_runtime_context().gcs_address
    cmd = _batch_cli(wf, data, out, "--engine", "ray", "--workers", "2", "--ray-address", address)
    env = {**os.environ, "SLMSTACK_PROGRESS": "0"}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "30 rows run" in res.stdout and "10 already done" in res.stdout
    got = results(out)
    assert set(got) == {f"in.jsonl:{i}" for i in range(1, 41)}
    assert got["in.jsonl:11"]["status"] == "completed"
