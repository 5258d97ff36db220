"""Resumable JSONL result files: an exclusive lock, and the rows a killed run finished.

Shared by ``slmstack run --output`` (:mod:`slmstack.workflows.batch`) and ``slmstack
batch`` (:mod:`slmstack.batchjob.sink`): every finished row is one complete JSON line; on
a rerun the file is read back, every complete line marks its row as done, a last line
cut off mid-write (the run was killed) is truncated away so that its row runs again, and
a line written for another input means the file belongs to another job, which is refused
rather than mixed. The file is locked (``flock``, POSIX) while a run writes it, so a
second run on the same file refuses at once instead of writing the same rows twice.
"""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TextIO, TypeVar

from slmstack.data.jsonl_log import read_log
from slmstack.errors import DataError

K = TypeVar("K", bound=Hashable)


def open_locked(path: Path, writer: str) -> TextIO:
    """``path`` open for appending, with an exclusive lock that closing it releases.

    ``writer`` names the command in the error (``slmstack run``, ``slmstack batch``).
    """
    if path.is_dir():
        raise DataError("is a folder; pass a file for the results, such as out.jsonl", path=path)
    folder = next((p for p in path.parents if p.exists()), None)
    if folder is not None and not folder.is_dir():
        raise DataError(f"{folder} is a file, not a folder; pass another output path", path=path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = path.open("a", encoding="utf-8")
    if sys.platform != "win32":  # Windows has no flock; its runs are not guarded
        import fcntl

        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise DataError(
                f"locked: another process (a second `{writer}`?) is writing this file; "
                "wait for it to finish, or pass another --output",
                path=path,
            ) from None
    return fh


def done_rows(
    path: Path,
    row_of: Callable[[dict[str, Any]], tuple[K, str]],
    expected_text: Callable[[K], str | None],
    *,
    writer: str,
    opening: bytes | None = None,
    changed: str | None = None,
) -> set[K]:
    """The rows whose complete lines ``path`` holds; truncates a half-written last line.

    ``row_of`` reads a line's row key and input text (raising ``KeyError``/``ValueError``/
    ``TypeError`` on a line that is not a result); ``expected_text`` gives the input text
    of a row key now (``None``: no such row). ``opening``: how every row's line starts,
    so that a first line cut short (a kill inside the first row) is run again too.
    ``changed``: the error to give when a row's input differs (default: the file belongs
    to another input or job).
    """
    if not path.exists():
        return set()
    fix = "Pass another --output (a new file), or --restart to overwrite it"
    done: set[K] = set()
    for row, text in read_log(
        path, row_of, kind=f"a result row of `{writer}`", fix=fix, opening=opening
    ):
        if expected_text(row) != text:
            why = changed or (
                "this file belongs to a different input file or job. Pass a new --output, "
                "or --restart to overwrite it"
            )
            raise DataError(
                f"row {row!r} was written for another input ({text[:40]!r}); {why}",
                path=path,
            )
        done.add(row)
    return done


def workflow_digest(source: Path) -> str:
    """A digest of what in a workflow file decides its results.

    The parsed file (so comments and layout do not count) without what only says where
    things go or how they are reached: ``description``, ``inbox``, ``ledger``,
    ``prices``, ``machine`` and each backend's ``options`` (its URL, key, timeouts). A
    skill retrained in place (the same ``train:`` file with new rows, a saved folder
    overwritten) is not seen.
    """
    import yaml

    raw = yaml.safe_load(source.read_bytes())
    if not isinstance(raw, dict):  # not a workflow: load_workflow says why
        raw = {"file": raw}
    kept = {k: v for k, v in raw.items() if k not in _NOT_RESULTS}
    if isinstance(kept.get("backends"), dict):
        kept["backends"] = {
            name: {k: v for k, v in b.items() if k != "options"} if isinstance(b, dict) else b
            for name, b in kept["backends"].items()
        }
    text = json.dumps(kept, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


_NOT_RESULTS = frozenset({"description", "inbox", "ledger", "prices", "machine"})


def run_tag(output: Path, *, fresh: bool, workflow: Path | None = None) -> str:
    """The tag of the run that writes ``output``, kept in ``.NAME.run`` beside it.

    It goes in every row's idempotency key, so that a resumed run (``fresh`` False: the
    output existed) files no second inbox packet and no second ledger rows, while a new
    run (``--restart``, or an output file that did not exist) files and records its own,
    even for the same texts. Call it before the output file is opened.

    ``workflow``: the workflow file the rows come from. Its :func:`workflow_digest` is
    kept beside the tag, and a resumed run of a workflow that changed since is refused,
    rather than mixing the two workflows' results in one file.

    Raises:
        DataError: resuming ``output`` with a workflow that changed since it started.
    """
    side = output.with_name(f".{output.name}.run")
    digest = workflow_digest(workflow) if workflow is not None and workflow.is_file() else None
    if not fresh and side.is_file():
        tag, _, kept = side.read_text(encoding="utf-8").strip().partition("\nworkflow ")
        if digest is not None and kept and kept != digest:
            raise DataError(
                f"the workflow {workflow} changed since this output was started, so its rows "
                "would mix the results of two workflows. Put the workflow back to resume, "
                "or pass --restart to run every row with the new one (or a new --output)",
                path=output,
            )
        return tag
    if not fresh and output.exists():
        return ""  # an output written before tags existed: its rows keep their keys
    tag = uuid.uuid4().hex[:12]
    side.parent.mkdir(parents=True, exist_ok=True)
    kept = "" if digest is None else f"workflow {digest}\n"
    side.write_text(f"{tag}\n{kept}", encoding="utf-8")
    return tag
