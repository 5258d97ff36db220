"""What the benchmarks share about the machine: its CPU, the lock that keeps timings apart,
and scratch folders that go when the run ends.

Every benchmark reports the CPU model and its vector flags beside its timings (our machines
differ: AVX2 only, or AVX-512 with VNNI and bf16), and takes ``/tmp/slmstack-cpu.lock``
around anything it times, as ``flock /tmp/slmstack-cpu.lock CMD`` does, so that two timed
jobs never share the cores.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOCK = Path("/tmp/slmstack-cpu.lock")


def scratch(prefix: str) -> Path:
    """A new folder under the system's temporary folder, removed when the process exits
    (trained skills and exports run to tens of MB a benchmark run)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def machine() -> dict[str, Any]:
    """CPU model and vector flags (avx2, avx512*, amx*) from /proc/cpuinfo."""
    info = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags = sorted(set(re.findall(r"avx512[a-z_0-9]*|amx[a-z_0-9]*|avx2", info)))
    return {"cpu_count": os.cpu_count(), "model_name": model.group(1) if model else "?",
            "cpu_flags": " ".join(flags), "machine": platform.machine(),
            "python": platform.python_version()}  # fmt: skip


@contextmanager
def cpu_lock() -> Iterator[float]:
    """Hold the shared CPU lock (as ``flock /tmp/slmstack-cpu.lock`` does); yields the wait."""
    with open(LOCK, "a") as fh:
        print(f"waiting for {LOCK} ...", flush=True)
        start = time.monotonic()
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield time.monotonic() - start
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def replace_section(path: Path, heading: str, block: str, *, after: str | None = None) -> None:
    """Put ``block`` in ``path`` in place of the section that starts with ``heading``.

    A section runs to the next ``## `` heading. A missing one goes after the section that
    starts with ``after`` when given and present, else at the end of the file.
    """
    current = path.read_text()

    def end_of(start: int, title: str) -> int:
        nxt = current.find("\n## ", start + len(title))
        return len(current) if nxt < 0 else nxt + 1

    start = current.find(heading)
    if start >= 0:
        path.write_text(current[:start] + block + current[end_of(start, heading) :])
    elif after is not None and after in current:
        at = end_of(current.index(after), after)
        path.write_text(current[:at] + block + current[at:])
    else:
        path.write_text(current.rstrip("\n") + "\n\n" + block)
