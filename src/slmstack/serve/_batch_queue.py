"""The micro-batcher's queue: items of many callers in FIFO order, each caller's gathered.

Each caller's items are one :class:`Submission` (a future and a slot per item, filled in
the caller's order as the item's batch returns); each item is one :class:`Entry` on the
queue. Taking a submission off the queue (its caller left, its deadline passed, an
earlier batch of it failed) marks its entries dropped in O(its items) and leaves them in
place; they are skipped when they reach the head. ``depth`` and ``tokens`` count live
entries only, so the queue limit and the batch bounds see what will really run.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

QUEUED, TAKEN, DROPPED = 0, 1, 2


@dataclass(eq=False)
class Submission:
    """One caller's items: where their results are gathered, in the caller's order."""

    future: asyncio.Future[list[Any]]
    results: list[Any]
    left: int
    deadline: float | None
    entries: list[Entry] = field(default_factory=list)
    begun: bool = False  # an item was taken into a batch: it is answered, deadline or not

    def fulfil(self, entry: Entry, output: Any) -> None:
        """Record ``entry``'s output; resolve the future once every item has one."""
        if self.future.done():
            return  # expired or cancelled while its batch ran: the result is discarded
        self.results[entry.index] = output
        self.left -= 1
        if self.left == 0:
            self.future.set_result(self.results)


@dataclass(eq=False, slots=True)
class Entry:
    """One queued item."""

    item: Any
    size: int
    index: int  # its position in the caller's items
    sub: Submission
    queued_at: float
    state: int = QUEUED


class BatchQueue:
    """Live entries in FIFO order, with their count (``depth``) and summed ``tokens``."""

    def __init__(self) -> None:
        self._entries: deque[Entry] = deque()
        self.depth = 0
        self.tokens = 0

    def add(self, sub: Submission, items: Sequence[Any], sizes: Sequence[int], now: float) -> None:
        """Queue ``items`` (of sizes ``sizes``) for ``sub``."""
        pairs = zip(items, sizes, strict=True)
        sub.entries = [Entry(item, size, i, sub, now) for i, (item, size) in enumerate(pairs)]
        self._entries.extend(sub.entries)
        self.depth += len(items)
        self.tokens += sum(sizes)

    def drop(self, sub: Submission) -> None:
        """Take ``sub``'s still-queued items off the counts (skipped when reached)."""
        for entry in sub.entries:
            if entry.state == QUEUED:
                entry.state = DROPPED
                self.depth -= 1
                self.tokens -= entry.size

    def head(self) -> Entry | None:
        """The oldest live entry, or ``None``."""
        entries = self._entries
        while entries and entries[0].state != QUEUED:
            entries.popleft()
        return entries[0] if entries else None

    def take(
        self, max_batch: int, max_tokens: int, now: float, expire: Callable[[Submission], None]
    ) -> list[Entry]:
        """Pop the next batch off the head, in order; ``expire`` each submission past due.

        A submission past due whose first items were already taken (it was split over
        batches) is not expired: its work is paid for, so its other items run too.

        The batch holds at most ``max_batch`` entries and ``max_tokens`` tokens, except
        that an entry larger than ``max_tokens`` forms a batch alone.
        """
        batch: list[Entry] = []
        tokens = 0
        entries = self._entries
        while entries and len(batch) < max_batch:
            entry = entries[0]
            if entry.state != QUEUED:
                entries.popleft()
                continue
            sub = entry.sub
            if not sub.begun and sub.deadline is not None and sub.deadline <= now:
                entries.popleft()
                expire(sub)  # drops all its items: this one is not run
                continue
            if batch and tokens + entry.size > max_tokens:
                break
            entries.popleft()
            entry.state = TAKEN
            sub.begun = True
            self.depth -= 1
            self.tokens -= entry.size
            tokens += entry.size
            batch.append(entry)
        return batch

    def pop_all(self) -> list[Submission]:
        """Empty the queue; the submissions that still had items on it, each once."""
        subs: dict[int, Submission] = {}
        while self._entries:
            entry = self._entries.popleft()
            if entry.state == QUEUED:
                subs.setdefault(id(entry.sub), entry.sub)
        return list(subs.values())


def by_submission(batch: list[Entry]) -> list[list[Entry]]:
    """``batch``'s entries grouped by caller, in the order of each caller's first entry."""
    groups: dict[int, list[Entry]] = {}
    for entry in batch:
        groups.setdefault(id(entry.sub), []).append(entry)
    return list(groups.values())
