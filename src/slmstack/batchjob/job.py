"""``run_job``: a workflow over a large set of inputs, on a local pool or on Ray.

The driver reads the inputs (:mod:`slmstack.batchjob.inputs`), loads the workflow once
to validate it and train any skill the file trains from data (so that workers only load
saved skills and never race to train them), finds the rows already written
(:mod:`slmstack.batchjob.sink`), and hands the rest to the engine, writing each batch's
outcomes as they arrive under a progress bar.

Exactly once: a row is in the output or the errors file at most once (the sink skips an
id it has written), and a rerun runs every row in neither (so none is lost); a row run
twice (a killed job resumed, a retried worker) files its inbox packet and its ledger rows
under the same key, and the inbox and the ledger keep the first (see
:mod:`slmstack.batchjob.runner`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import slmstack.batchjob.local
import slmstack.batchjob.ray_engine  # noqa: F401  (registers the engines)
from slmstack.batchjob.base import engines
from slmstack.batchjob.inputs import input_files, read_rows
from slmstack.batchjob.runner import JobSpec, job_id
from slmstack.batchjob.sink import Sink, errors_path_for
from slmstack.errors import ConfigError, DataError
from slmstack.progress import progress
from slmstack.workflows import EscalateStep, Step, load_workflow
from slmstack.workflows.loader import workflow_inbox_url
from slmstack.workflows.packet import default_url
from slmstack.workflows.resume import run_tag


@dataclass(frozen=True)
class JobSummary:
    """What a batch job did.

    Attributes:
        total: input rows.
        already_done: rows found in the output or errors file at the start (resume).
        processed: rows run by this job.
        failed: rows of this job written to the errors file.
        seconds: wall time of the whole job; ``startup_seconds`` of it passed before the
            first batch was written (reading, loading, starting workers), and
            ``first_batch`` rows came with that batch. ``(processed - first_batch) /
            (seconds - startup_seconds)`` approximates the throughput once the workers run
            on the local engine; on the ray engine it overstates it, because Ray Data hands
            each block to the driver about one block late (``bench/batch.py`` measures it
            from the ledger's time stamps, which the workers write).
        output: the results file; ``errors`` the errors file.
        inbox: where escalation packets were filed.
    """

    total: int
    already_done: int
    processed: int
    failed: int
    seconds: float
    startup_seconds: float
    first_batch: int
    output: Path
    errors: Path
    inbox: str
    engine: str
    workers: int


def run_job(
    workflow: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    *,
    engine: str = "local",
    workers: int = 1,
    batch_size: int = 64,
    errors_path: str | Path | None = None,
    text_field: str = "text",
    trace: bool = False,
    restart: bool = False,
    retry_errors: bool = False,
    ray_address: str | None = None,
    threads: int | None = None,
    inbox: str | None = None,
    ledger: str | None = None,
) -> JobSummary:
    """Run ``workflow`` on every row of ``input_path``; results to ``output_path`` (JSONL).

    Args:
        workflow: the workflow YAML file.
        input_path: a JSONL, CSV, TSV or Parquet file, a folder, or a glob
            (see :func:`slmstack.batchjob.read_rows`).
        output_path: one line per row that ran: ``{"id": ROW_ID, "input": ..., "status":
            ..., "output": ...}`` as ``slmstack run --output`` writes; an existing file
            is resumed.
        engine: ``local`` (worker processes here) or ``ray`` (Ray Data actors).
        workers: worker processes or actors, each loading the models once.
        batch_size: rows per ``Workflow.run_batch`` call; a kill loses at most the
            batches in flight (64: where an encoder's per-call cost is spread thin while a
            batch stays seconds of work).
        errors_path: one line per row that failed, with its reason; by default
            ``OUT.errors.jsonl`` beside the output. Its rows are done too: pass
            ``retry_errors`` to run them again.
        text_field: the JSONL key or the CSV/Parquet column of the text.
        trace: write each row's full trace.
        restart: discard both files and start over.
        retry_errors: run the rows of the errors file again.
        ray_address: a Ray cluster to run on (``engine="ray"``).
        threads: torch and onnxruntime threads per worker; by default the cores divided
            among the workers.
        inbox: database URL of the escalation inbox, overriding the file's ``inbox:``.
        ledger: database URL of the cost ledger, overriding the file's ``ledger:``.

    Raises:
        ConfigError: an unknown engine or a bad option.
        DataError: unreadable inputs, or an output file of another input or job, or of
            a workflow file that changed since it started (see
            :func:`slmstack.workflows.resume.run_tag`).

    Example:
        >>> run_job("wf.yaml", "tickets/*.jsonl", "out.jsonl", workers=2)  # doctest: +SKIP
    """
    start = time.perf_counter()
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1; got {batch_size}")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1; got {threads}")
    make = engines.get(engine)
    runner = make(workers=workers, address=ray_address)
    output = Path(output_path)
    errors = Path(errors_path) if errors_path is not None else errors_path_for(output)
    inputs = {f.resolve() for f, _ in input_files(input_path)}
    for target, flag in ((output, "--output"), (errors, "--errors")):
        if _reads_itself(input_path, (target,)) or target.resolve() in inputs:
            raise DataError(
                "is one of the input files, or would be on the next run (inside the input "
                f"folder or glob); pass an {flag} outside the input, so that the input is "
                "never overwritten and the job can resume",
                path=target,
            )
    rows = read_rows(input_path, text_field)
    source = Path(workflow).resolve()
    inbox_url = _absolute(inbox or workflow_inbox_url(source) or default_url())
    ledger_url = _absolute(ledger) if ledger is not None else None
    # Validate (with YAML lines) and train what the file trains, once, before any worker;
    # and create the inbox and ledger tables here, so that workers never race to.
    wf = load_workflow(source, inbox=inbox_url, ledger=ledger_url)
    name = wf.name
    if _files_packets(wf.steps, wf.blocks.values()):
        wf.inbox  # noqa: B018  (opening it creates its table)
    if wf.ledger is not None:
        wf.ledger.close()
    del wf
    fresh = restart or not output.exists()
    with Sink(
        output, errors, {r.id: r.text for r in rows}, restart=restart, retry_errors=retry_errors
    ) as sink:
        # A new run files its own packets and ledger rows; a resumed one, of the same
        # workflow only, keeps its tag.
        tag = run_tag(output, fresh=fresh, workflow=source)
        spec = JobSpec(
            workflow=source,
            job=job_id(output) + (f"-{tag}" if tag else ""),
            inbox=inbox_url,
            ledger=ledger_url,
            trace=trace,
            threads=threads or max(1, (os.cpu_count() or 1) // workers),
        )
        todo = [r for r in rows if r.id not in sink.done]
        startup, first_batch = 0.0, 0
        with progress() as bar:
            task = bar.add_task(name, total=len(rows), completed=len(rows) - len(todo), info="")
            for outcomes in runner.map(spec, todo, batch_size):
                wrote = sink.write(outcomes)
                if not startup:
                    startup, first_batch = time.perf_counter() - start, wrote
                bar.update(task, advance=wrote, info=f"{sink.failed} failed")
    return JobSummary(
        total=len(rows),
        already_done=len(rows) - len(todo),
        processed=sink.written + sink.failed,
        failed=sink.failed,
        seconds=time.perf_counter() - start,
        startup_seconds=startup,
        first_batch=first_batch,
        output=output,
        errors=errors,
        inbox=inbox_url,
        engine=engine,
        workers=runner.workers,
    )


def _files_packets(steps: Iterable[Step], blocks: Iterable[Iterable[Step]]) -> bool:
    """Whether any step, however deep, escalates to a person (files inbox packets)."""
    todo = [*steps, *(s for block in blocks for s in block)]
    while todo:
        step = todo.pop()
        if isinstance(step, EscalateStep) and step.to == "human":
            return True
        todo.extend(step.children())
    return False


def _reads_itself(source: str | Path, outputs: tuple[Path, ...]) -> bool:
    """Whether an output lies inside the input folder or matches the input glob."""
    import fnmatch

    text = str(source)
    if Path(text).is_dir():
        folder = Path(text).resolve()
        return any(folder in out.resolve().parents for out in outputs)
    if set("*?[") & set(text):
        pattern = str(Path(text).absolute())
        return any(fnmatch.fnmatch(str(out.absolute()), pattern) for out in outputs)
    return False


def _absolute(url: str) -> str:
    """A SQLite URL with an absolute path: workers (Ray actors) run in other folders."""
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        return url
    path = Path(url.removeprefix("sqlite:///"))
    return url if path.is_absolute() else f"sqlite:///{path.resolve()}"
