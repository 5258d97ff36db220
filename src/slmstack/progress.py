"""Rich progress bars for long steps, on stderr.

Set ``SLMSTACK_PROGRESS=0`` to silence them (tests, logs).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def enabled() -> bool:
    """Whether progress bars are shown."""
    return os.environ.get("SLMSTACK_PROGRESS", "1") not in {"0", "false", "no"}


@contextmanager
def progress() -> Iterator[Progress]:
    """A progress display; add tasks with ``bar.add_task(description, total=n)``."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
        disable=not enabled(),
    )
    with bar:
        yield bar
