"""When a batch may skip the thread hop: a lone, fast call on an idle server.

A batch normally runs in an executor thread, so that the event loop keeps reading and
parsing requests while the model works. For a lone request to an idle server that buys
nothing (there is nothing else to read), and the hop to the thread and back costs two
thread wake-ups: measured on 2 cores (``bench/serve_latency.py``), 0.5-0.9 ms of a
request's 1.5-2.3 ms HTTP overhead. So a batch runs on the event loop itself when:

- it is one item, and nothing else is queued behind it;
- no batch of any target sharing the executor is running (:class:`Slot`), so the call
  never competes for the cores with another model call;
- this target's lone calls have been measured, and take less than ``max_ms`` on
  average (a moving average, the first call always in the thread): the loop is blocked
  at most about that long, and only while nothing else waits;
- the target allows it: the server enables it for local skills only, never for a
  workflow (a step may reach an LLM or the inbox's database) or a skill that calls a
  remote model.

Under load none of this holds (batches hold several items, or more are queued), so
batches run in the thread as before; ``max_ms`` 0 turns it off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from slmstack.errors import ConfigError

_SMOOTHING = 0.2  # weight of the newest lone call in the moving average


@dataclass
class Slot:
    """Batches running now on one executor (shared by the batchers that share it)."""

    running: int = 0


class InlinePolicy:
    """Decides, per batch, whether it runs on the event loop (see the module docstring).

    Args:
        max_ms: lone calls measured faster than this on average may run on the loop;
            0 never.
        slot: the count of running batches shared by every batcher on the same executor.
    """

    def __init__(self, max_ms: float = 0.0, slot: Slot | None = None):
        if (
            isinstance(max_ms, bool)
            or not isinstance(max_ms, int | float)
            or not (0 <= max_ms < math.inf)
        ):
            raise ConfigError(
                f"inline_max_ms must be a number of milliseconds >= 0 (0: never). Got "
                f"{max_ms!r} instead."
            )
        self.max_s = float(max_ms) / 1000
        self.slot = slot if slot is not None else Slot()
        self.lone_s: float | None = None  # moving average of one-item batches' seconds
        self.inline_runs = 0

    def allows(self, batch_size: int, queued: int) -> bool:
        """Whether a batch of ``batch_size`` items, ``queued`` left behind it, runs inline."""
        return (
            batch_size == 1
            and queued == 0
            and self.slot.running == 0
            and self.lone_s is not None
            and self.lone_s < self.max_s
        )

    def measured(self, size: int, seconds: float) -> None:
        """Record a finished batch: one-item batches feed the moving average."""
        if size != 1:
            return
        if self.lone_s is None:
            self.lone_s = seconds
        else:
            self.lone_s += _SMOOTHING * (seconds - self.lone_s)


__all__ = ["InlinePolicy", "Slot"]
