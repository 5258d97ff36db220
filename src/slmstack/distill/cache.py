"""The teacher's labels, cached on disk so that nothing is paid for twice.

A JSONL file, one line per labelled text, keyed by the sha256 of the teacher's identity
and the text. Lines are appended and flushed as each batch finishes, so an interrupted
run loses at most the batch in flight and resumes where it stopped; a torn last line (a
crash mid-write, with no newline after it) is cut off and its text relabelled; any other
line that is not a cached label is an error that names it, and a file that holds none is
never written to. The teacher's identity is its registered
kind and parameters, so changing the teacher's model or prompt never reuses stale labels.

A run buys under an exclusive lock of the file (``flock``, POSIX) and reads the file
again once it holds it: a second run on the same cache refuses at once rather than buy
the same labels, and one started before another finished reuses what that one bought.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from slmstack.data.jsonl_log import read_log
from slmstack.errors import DataError


@dataclass(frozen=True)
class TeacherLabel:
    """What the teacher said about one text, and what it cost."""

    key: str
    label: str | None  # None when the teacher abstained
    confidence: float
    tokens_in: int
    tokens_out: int
    cost_nano_usd: int
    abstained: str | None = None


# How a backend is reached, not what it answers: a server restarted on another port keeps
# its labels.
_CONNECTION = frozenset({"base_url", "api_key_env", "timeout_s", "retries", "backoff_s",
                         "max_wait_s", "max_concurrency", "fallbacks"})  # fmt: skip


def teacher_id(kind: str, params: Mapping[str, Any], data_sha256: str = "") -> str:
    """A stable identity for a teacher: its kind, what it answers with, what it learned from.

    Connection options (URL, key variable, timeouts) are left out, so the same model on a
    restarted server reuses its labels; ``data_sha256`` (the teacher's provenance) is in,
    so a teacher refitted on other demonstrations never reuses stale labels.
    """
    kept = dict(params)
    options = kept.get("backend_options")
    if isinstance(options, Mapping):
        kept["backend_options"] = {k: v for k, v in options.items() if k not in _CONNECTION}
    return json.dumps([kind, kept, data_sha256], sort_keys=True, default=str)


def text_key(teacher: str, text: str) -> str:
    """The cache key of ``text`` labelled by ``teacher``."""
    return hashlib.sha256(f"{teacher}\0{text}".encode()).hexdigest()


def _row(obj: Any) -> TeacherLabel:
    """A cache line as a label; ``TypeError``/``ValueError`` naming what is wrong."""
    label = TeacherLabel(**obj)
    if not isinstance(label.key, str) or not isinstance(label.label, str | None):
        raise TypeError("'key' must be a string and 'label' a string or null")
    if isinstance(label.confidence, bool) or not isinstance(label.confidence, int | float):
        raise TypeError(f"'confidence' must be a number; got {label.confidence!r}")
    for name in ("tokens_in", "tokens_out", "cost_nano_usd"):
        value = getattr(label, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name!r} must be a whole number >= 0; got {value!r}")
    return label


class TeacherCache:
    """Append-only labels of one teacher, read back on resume."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._labels: dict[str, TeacherLabel] = {}
        self._holding = False
        if self.path.exists():
            self._read()

    def _read(self) -> None:
        labels = read_log(
            self.path, _row, kind="a teacher cache", opening=b'{"key"',
            fix="its first line is no cached label; pass another --cache, or move the file away",
            damaged="correct or delete the line (its label will be bought again)",
        )  # fmt: skip
        self._labels = {label.key: label for label in labels}

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the file while labels are bought, with the labels other runs added since.

        Re-entrant: an inner ``locked()`` of the same cache holds nothing more.
        """
        if self._holding:
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            if sys.platform != "win32":  # Windows has no flock; its runs are not guarded
                import fcntl

                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise DataError(
                        "locked: another run (a second `slmstack distill`?) is buying "
                        "labels into this teacher cache; wait for it to finish, then run "
                        "again (its labels are reused), or pass another --cache",
                        path=self.path,
                    ) from None
            self._read()
            self._holding = True
            try:
                yield
            finally:
                self._holding = False

    def get(self, key: str) -> TeacherLabel | None:
        """The cached label for ``key``, if any."""
        return self._labels.get(key)

    def add(self, labels: Iterable[TeacherLabel], *, replace: bool = False) -> None:
        """Append ``labels`` and flush them to disk.

        ``replace``: over cached ones too (the last line of a key wins when read back).
        """
        batch = [label for label in labels if replace or label.key not in self._labels]
        if not batch:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            for label in batch:
                f.write(json.dumps(asdict(label), ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        for label in batch:
            self._labels[label.key] = label

    def __len__(self) -> int:
        return len(self._labels)
