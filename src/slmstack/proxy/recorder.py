"""The recorder: exchanges go to the database off the request path, in batches.

The request path only puts the captured bytes on a queue (:meth:`Recorder.submit`, a
few microseconds, never blocking). One thread takes them off in batches of up to
``batch_size`` (or whatever arrived within ``flush_every_s``), parses, masks and prices
them (:func:`~slmstack.proxy.recording.build_rows`), and writes each batch as one insert
into the traffic table and one into the ledger. Why a thread and not the event loop:
masking (an entity tagger, Fernet) and database writes are CPU and blocking I/O that
would sit between two clients' requests; in the thread they release the GIL for most
of their time.

What is not written is said, never hidden: a queue that is full (the database cannot
keep up) drops the exchange and counts it in :attr:`Recorder.dropped`, logging an error;
an exchange that cannot be masked (or read) is dropped (rather than stored unmasked)
and counted in :attr:`Recorder.failed`, the rest of its batch recorded; a batch the
database refuses is kept and retried with the next; a batch that fails otherwise (a value
no driver can bind, which no retry mends) is counted in ``failed`` and logged, and the
recording goes on.

Listeners (:meth:`Recorder.listen`) hear of each batch of shadow rows once it is stored,
in the recorder's thread: the proxy's serving checks its audits there, off the request
path.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from slmstack.costs.ledger import Ledger, LedgerRow
from slmstack.errors import ConfigError, SlmstackError
from slmstack.proxy.exchange import Exchange
from slmstack.proxy.masking import Masker
from slmstack.proxy.promote import ShadowStore
from slmstack.proxy.recording import Pricing, Recorded, Route, build_rows
from slmstack.proxy.shadow import Shadow, ShadowRow
from slmstack.proxy.traffic import TrafficRow, TrafficStore

_log = logging.getLogger("slmstack.proxy")
_STOP = object()
_Item = tuple[Exchange, Route | None]


class Recorder:
    """Records exchanges to ``store`` and ``ledger`` from a thread of its own.

    Args:
        store: the traffic table.
        ledger: the cost ledger (the same database, or another).
        pricing: the price table and how to use it.
        masker: masks personal data before anything is written; ``None``: no masking.
        shadow, shadow_store: students to compare with the LLM on their tasks' calls, and
            where their comparisons go (both or neither).
        batch_size: exchanges written per insert, at most.
        flush_every_s: how long the thread waits for a batch to fill.
        max_queue: exchanges waiting at most; beyond, new ones are dropped (and counted).
    """

    def __init__(
        self,
        store: TrafficStore,
        ledger: Ledger,
        *,
        pricing: Pricing,
        masker: Masker | None = None,
        shadow: Shadow | None = None,
        shadow_store: ShadowStore | None = None,
        batch_size: int = 256,
        flush_every_s: float = 0.2,
        max_queue: int = 100_000,
    ):
        self.store = store
        self.ledger = ledger
        self.pricing = pricing
        self.masker = masker
        if (shadow is None) != (shadow_store is None):
            raise ConfigError("a shadow needs a shadow store to write to, and the reverse")
        self.shadow = shadow
        self.shadow_store = shadow_store
        self._pending_shadow: list[ShadowRow] = []
        self._listeners: list[Callable[[Sequence[ShadowRow]], None]] = []
        self.batch_size = batch_size
        self.flush_every_s = flush_every_s
        self.max_queue = max_queue
        self.recorded = 0
        self.dropped = 0
        self.failed = 0
        self.write_error: str | None = None  # the last write's failure, until one succeeds
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._pending: list[tuple[TrafficRow | None, LedgerRow]] = []
        self._warned: set[str] = set()
        self._state = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the request path
    def submit(self, exchange: Exchange, route: Route | None = None) -> None:
        """Queue ``exchange`` for recording; never blocks (drops, counted, when full).

        ``route``: how a served task's call was answered (see
        :class:`~slmstack.proxy.recording.Route`).
        """
        if self._queue.qsize() >= self.max_queue:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                _log.error(
                    "the recorder's queue is full (%d exchanges): %d not recorded so far; the "
                    "database is too slow for this traffic", self.max_queue, self.dropped,
                )  # fmt: skip
            return
        with self._state:  # so that the thread cannot call the queue idle in between
            self._idle.clear()
            self._queue.put((exchange, route))

    def listen(self, callback: Callable[[Sequence[ShadowRow]], None]) -> None:
        """Call ``callback`` with each batch of shadow rows once stored (in the thread)."""
        self._listeners.append(callback)

    # ------------------------------------------------------------------ the thread
    def start(self) -> None:
        """Start the recording thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="proxy-recorder", daemon=True)
            self._thread.start()

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything submitted so far is written (tests, benchmarks)."""
        return self._idle.wait(timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Record what is queued, then stop the thread and flush the ledger."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout_s)
            if self._thread.is_alive():  # said, never hidden: what it still holds is lost
                _log.error(
                    "the recorder did not finish within %g s: %d exchanges still queued and "
                    "%d rows waiting for the database are not recorded (the database is slow "
                    "or down; its last error: %s)", timeout_s, self._queue.qsize(),
                    len(self._pending), self.write_error,
                )  # fmt: skip
            self._thread = None
        else:
            self._drain_now()
        self.ledger.flush()

    def _drain_now(self) -> None:
        batch: list[_Item] = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, tuple):
                batch.append(item)
        if batch:
            self._record(batch)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                first = self._queue.get(timeout=self.flush_every_s)
            except queue.Empty:
                if self._pending:
                    self._write()
                continue
            batch: list[_Item] = []
            item: object = first
            while True:
                if item is _STOP:
                    stopping = True
                elif isinstance(item, tuple):
                    batch.append(item)
                if len(batch) >= self.batch_size:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._record(batch)
            with self._state:
                if self._queue.empty() and not self._pending:
                    self._idle.set()
        self._spill()

    def _spill(self) -> None:
        """At the stop, rows the database still refuses go to a JSONL file, not away."""
        for _ in range(3):
            if not self._pending:
                return
            self._write()
        if not self._pending:
            return
        path = Path(f"slmstack-proxy-unrecorded-{time.strftime('%Y%m%dT%H%M%S')}.jsonl").resolve()
        with path.open("a", encoding="utf-8") as fh:
            for traffic, ledger in self._pending:
                row = {"traffic": None if traffic is None else asdict(traffic),
                       "ledger": asdict(ledger)}  # fmt: skip
                fh.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")
            for shadow in self._pending_shadow:  # the students' comparisons with those calls
                fh.write(json.dumps({"shadow": asdict(shadow)}, default=str,
                                    ensure_ascii=False) + "\n")  # fmt: skip
        _log.error("the database refused %d recorded exchanges and %d comparisons at the stop; "
                   "they are in %s (masked as stored)", len(self._pending),
                   len(self._pending_shadow), path)  # fmt: skip
        self._pending, self._pending_shadow = [], []

    def _record(self, batch: Sequence[_Item]) -> None:
        if batch:
            try:
                recorded = self._rows(batch)
            except Exception:  # one odd exchange must not cost its batch: one at a time
                recorded = Recorded([], [])
                for item in batch:
                    try:
                        one = self._rows([item])
                    except Exception as exc:  # never store what could not be masked
                        self.failed += 1
                        _log.error("an exchange of %s was not recorded: %s: %s", item[0].path,
                                   type(exc).__name__, exc)  # fmt: skip
                        continue
                    recorded.rows.extend(one.rows)
                    recorded.shadow.extend(one.shadow)
            self._warn_unpriced(recorded.rows)
            self._pending.extend(recorded.rows)
            self._pending_shadow.extend(recorded.shadow)
        self._write()

    def _rows(self, batch: Sequence[_Item]) -> Recorded:
        return build_rows([ex for ex, _ in batch], pricing=self.pricing, masker=self.masker,
                          shadow=self.shadow, routes=[route for _, route in batch])  # fmt: skip

    def _write(self) -> None:
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        try:
            self.store.insert(t for t, _ in rows if t is not None)
            self.ledger.append(ledger for _, ledger in rows)
            self.ledger.flush()
            shadowed: list[ShadowRow] = []
            if self.shadow_store is not None and self._pending_shadow:
                self.shadow_store.insert(self._pending_shadow)
                shadowed, self._pending_shadow = self._pending_shadow, []
        except SlmstackError as exc:
            keep = rows[-self.max_queue :]
            self.dropped += len(rows) - len(keep)
            self._pending = keep
            self.write_error = str(exc)
            _log.error("cannot record %d exchanges (kept, retried): %s", len(keep), exc)
            time.sleep(min(1.0, self.flush_every_s))
            return
        except Exception as exc:  # a row no retry can write: lose it, not the recording thread
            self.failed += len(rows)
            self._pending_shadow = []
            self.write_error = f"{type(exc).__name__}: {exc}"
            _log.error("%d exchanges were not recorded: %s", len(rows), self.write_error)
            return
        self.recorded += len(rows)
        self.write_error = None
        for listener in self._listeners if shadowed else ():
            try:
                listener(shadowed)
            except Exception as exc:  # a listener's failure must not stop the recording
                _log.error("a listener of shadow rows failed: %s: %s", type(exc).__name__, exc)

    @property
    def pending(self) -> int:
        """Exchanges waiting to be written (after a failed write, until a write succeeds)."""
        return len(self._pending)

    def _warn_unpriced(self, rows: Sequence[tuple[TrafficRow | None, LedgerRow]]) -> None:
        for traffic, ledger in rows:
            status = ledger.decision or ""
            model = traffic.model if traffic is not None else ledger.model
            if status in ("priced", "student") or model in self._warned:
                continue
            self._warned.add(model)
            _log.warning("calls to %r are recorded as %s: %s", model, status,
                         ledger.reason)  # fmt: skip


__all__ = ["Recorder"]
