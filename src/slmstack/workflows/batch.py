"""Batch runs over a file, written row by row to JSONL, resumable after an interruption.

The rows still to do run in chunks (64 texts by default) through ``Workflow.run_batch``,
so that each skill predicts once per chunk instead of once per row; each chunk's rows
are written, in order, once the chunk is done. A chunk that fails is run again text by
text: the rows before the one that fails are written, and its error stops the run. Each
output line carries the input row number and text. Rerunning the same command finds the
rows already written, checks they belong to this input and to this workflow file as it
was (refusing otherwise), drops a last line that was cut off mid-write, and continues
with the first missing row, so no row is done twice or lost. Escalations and ledger rows
are filed with a key made of the output file, the row and the text, so a row that
escalated just before the interruption does not file a second packet (or second ledger
rows) when it is run again. The output file is locked while a run writes it (``flock``,
on POSIX systems): a second run on the same file refuses at once instead of appending
the same rows again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmstack.data.utf8 import jsonl_lines, lone_surrogate, read_utf8
from slmstack.errors import ConfigError, DataError
from slmstack.progress import progress
from slmstack.workflows.engine import Workflow
from slmstack.workflows.resume import done_rows, open_locked, run_tag
from slmstack.workflows.trace import Result


@dataclass(frozen=True)
class BatchSummary:
    """What a batch run did.

    ``escalated`` counts every hand-off; ``packets`` those filed in the inbox for a person.
    """

    total: int
    already_done: int
    processed: int
    escalated: int
    seconds: float
    output: Path
    packets: int = 0


def _key(prefix: str, row: int, text: str) -> str:
    """The idempotency key of one row: the output file, the row and the text's digest."""
    return f"{prefix}#{row}:{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}"


def read_inputs(path: Path, text_field: str = "text") -> list[str]:
    """Texts from ``.txt`` (one per line), CSV, TSV or JSONL (``text_field`` or a string)."""
    if not path.is_file():
        raise DataError("input file does not exist", path=path)
    if path.suffix.lower() == ".txt":
        return [line for line in jsonl_lines(read_utf8(path)) if line.strip()]
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        texts = []
        for n, line in enumerate(jsonl_lines(read_utf8(path)), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"not valid JSON: {exc.msg}", path=path, row=n) from exc
            if (why := lone_surrogate(line, obj)) is not None:
                raise DataError(why, path=path, row=n)
            if isinstance(obj, str):
                texts.append(obj)
            elif isinstance(obj, dict) and isinstance(obj.get(text_field), str):
                texts.append(obj[text_field])
            else:
                raise DataError(
                    f"each line must be a JSON string or an object with a string {text_field!r} "
                    "(pass --text-field NAME for another key)",
                    path=path,
                    row=n,
                )
        return texts
    from slmstack.data.readers import column_texts

    return column_texts(path, text_field, "--text-field")


def _done_rows(output: Path, texts: list[str]) -> set[int]:
    """Rows already in ``output``; cuts off a half-written last line."""

    def row_of(obj: dict[str, Any]) -> tuple[int, str]:
        return int(obj["row"]), obj["input"]

    def expected(row: int) -> str | None:
        return texts[row] if 0 <= row < len(texts) else None

    return done_rows(output, row_of, expected, writer="slmstack run", opening=b'{"row": ')


def _chunk_results(workflow: Workflow, chunk: list[str], keys: list[str]) -> Iterator[Result]:
    """The chunk's results, in order; when the batch fails, each text's run alone.

    So the rows before the one that sank the chunk are written (with the LLM answers the
    failed batch paid for, see :mod:`slmstack.workflows.batching`) and that row's error
    stops the run, which resumes at that row.
    """
    try:
        results = workflow.run_batch(chunk, keys=keys)
    except Exception:
        for text, key in zip(chunk, keys, strict=True):
            yield workflow.run(text, key=key)
        return
    yield from results


def run_batch(
    workflow: Workflow,
    input_path: str | Path,
    output_path: str | Path,
    *,
    text_field: str = "text",
    trace: bool = False,
    restart: bool = False,
    chunk_size: int = 64,
) -> BatchSummary:
    """Run ``workflow`` on every text of ``input_path`` and append results to JSONL.

    Args:
        workflow: the workflow to run.
        input_path: ``.txt``, CSV, TSV or JSONL.
        output_path: JSONL; when it exists the run resumes after the rows it holds.
        text_field: the column or key holding the text.
        trace: include each row's full trace.
        restart: start over, discarding ``output_path``.
        chunk_size: texts per ``Workflow.run_batch`` call; a kill loses at most the chunk
            being run (64: the batch where an encoder's per-call cost is spread
            thin, while a chunk stays seconds of work).

    Raises:
        DataError: an input row is unusable, ``output_path`` holds results of another
            input or of the workflow's file before it changed, or another process is
            writing ``output_path`` (it is locked).

    Example:
        >>> run_batch(load_workflow("wf.yaml"), "in.jsonl", "out.jsonl")  # doctest: +SKIP
    """
    start = time.perf_counter()
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be at least 1; got {chunk_size}")
    output = Path(output_path)
    if output.resolve() == Path(input_path).resolve():
        raise DataError(
            "--output is the input file; pass another file for the results, so that the "
            "input is never overwritten",
            path=output,
        )
    texts = read_inputs(Path(input_path), text_field)
    escalated = packets = 0
    fresh = restart or not output.exists()
    # Locked before anything is read, so that two runs never both see row k as missing.
    with open_locked(output, "slmstack run") as fh:
        if restart:
            fh.truncate(0)
        done = _done_rows(output, texts)
        todo = [i for i in range(len(texts)) if i not in done]
        tag = run_tag(output, fresh=fresh, workflow=workflow.source)
        prefix = str(output.resolve()) + (f"@{tag}" if tag else "")
        with progress() as bar:
            task = bar.add_task(workflow.name, total=len(texts), completed=len(done), info="")
            for at in range(0, len(todo), chunk_size):
                rows = todo[at : at + chunk_size]
                keys = [_key(prefix, i, texts[i]) for i in rows]
                results = _chunk_results(workflow, [texts[i] for i in rows], keys)
                for i, result in zip(rows, results, strict=False):  # stops where a row fails
                    row: dict[str, Any] = {"row": i, **result.to_dict(trace=trace)}
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                    escalated += result.status == "escalated"
                    packets += (
                        result.escalation is not None and result.escalation.packet_id is not None
                    )
                fh.flush()  # a crash loses at most the chunk being written
                bar.update(task, advance=len(rows), info=f"{escalated} escalated")
        os.fsync(fh.fileno())
    return BatchSummary(
        total=len(texts),
        already_done=len(done),
        processed=len(todo),
        escalated=escalated,
        seconds=time.perf_counter() - start,
        output=output,
        packets=packets,
    )
