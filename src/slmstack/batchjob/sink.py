"""Where a batch job writes: the output JSONL and the errors JSONL, locked, resumable.

Each finished row is one line in exactly one of the two files, keyed by its row id. On a
rerun the files are read back: every complete line marks its row as done, a last line cut
off mid-write (the job was killed) is truncated away so that its row runs again, and a
line whose input differs from the row of that id now means the file belongs to another
input, which is refused rather than mixed. Both files are locked (``flock``, POSIX) while
a job writes them, so that a second job on the same output refuses at once instead of
writing the same rows twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from slmstack.errors import DataError
from slmstack.workflows.resume import done_rows, open_locked


@dataclass(frozen=True)
class Outcome:
    """One finished row: its id, whether it ran (``ok``), and its JSON line (no newline)."""

    id: str
    ok: bool
    line: str


def errors_path_for(output: Path) -> Path:
    """``out.errors.jsonl`` beside ``out.jsonl``: the default errors file."""
    stem = output.name.removesuffix(".jsonl") if output.name.endswith(".jsonl") else output.name
    return output.with_name(f"{stem}.errors.jsonl")


class Sink:
    """The output and errors files of one job, open for appending and locked.

    Use as a context manager; :attr:`done` holds the ids of rows already written.

    Args:
        output: the results JSONL.
        errors: the errors JSONL.
        inputs: row id → text of every input row (to check a resumed file matches).
        restart: empty both files first.
        retry_errors: empty the errors file first, so that its rows run again.
    """

    def __init__(
        self,
        output: Path,
        errors: Path,
        inputs: Mapping[str, str],
        *,
        restart: bool = False,
        retry_errors: bool = False,
    ):
        if output.resolve() == errors.resolve():
            raise DataError("the errors file must differ from --output; pass another --errors")
        self.output = output
        self.errors = errors
        self._inputs = inputs
        self._restart = restart
        self._retry_errors = retry_errors
        self._stack = ExitStack()
        self._out: TextIO | None = None
        self._err: TextIO | None = None
        self.done: set[str] = set()
        self.written = 0
        self.failed = 0

    def __enter__(self) -> Sink:
        try:
            self._out = self._stack.enter_context(open_locked(self.output, "slmstack batch"))
            self._err = self._stack.enter_context(open_locked(self.errors, "slmstack batch"))
            if self._restart:
                self._out.truncate(0)
            if self._restart or self._retry_errors:
                self._err.truncate(0)
            # The output first: a row of the errors file that no longer matches, in an
            # output that does, is a failed row fixed in the input since.
            self.done = _done_ids(self.output, self._inputs)
            self.done |= _done_ids(self.errors, self._inputs, changed=_FIXED)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for fh in (self._out, self._err):
            if fh is not None and not fh.closed:
                fh.flush()
                os.fsync(fh.fileno())
        self._stack.close()

    def write(self, outcomes: Iterable[Outcome]) -> int:
        """Append each outcome not written yet to its file and flush; the number written.

        A row written before (a retried batch that did finish once) is skipped, so each
        row is written once whatever the engine retried.
        """
        assert self._out is not None and self._err is not None, "use Sink as a context manager"
        n = 0
        for outcome in outcomes:
            if outcome.id in self.done:
                continue
            self.done.add(outcome.id)
            (self._out if outcome.ok else self._err).write(outcome.line + "\n")
            self.written += outcome.ok
            self.failed += not outcome.ok
            n += 1
        # A kill loses at most the batch being written; its rows run again on resume.
        self._out.flush()
        self._err.flush()
        return n


_FIXED = (
    "the input row changed since it failed. Run the failed rows again with --retry-errors "
    "(the results written are kept), or pass a new --output"
)


def _done_ids(path: Path, inputs: Mapping[str, str], changed: str | None = None) -> set[str]:
    """Ids of the complete lines of ``path``; truncates a half-written last line."""

    def row_of(obj: dict[str, Any]) -> tuple[str, str]:
        return obj["id"], obj["input"]

    # Every line opens with the row id (RowRunner writes it first).
    return done_rows(
        path, row_of, inputs.get, writer="slmstack batch", opening=b'{"id": ', changed=changed
    )
