"""Token streams for the server: a blocking generator driven off the event loop, and a gate.

A skill's :meth:`stream` is a blocking iterator (each piece waits for the model), so
:class:`ThreadStream` runs it in a thread of its own and hands each piece to the event
loop; closing it stops the thread at the next piece and closes the iterator, which stops
the generation (a client that disconnects stops costing compute).

Streams do not go through a :class:`~slmstack.serve.batcher.MicroBatcher` (a stream is one
request's generation, not a batch), so :class:`StreamGate` gives them the same limits:
``slots`` generations at once per target (one: the generator runs one call at a time
anyway), a bounded number waiting (:class:`~slmstack.errors.Overloaded` beyond it) and
the request's deadline for the wait (:class:`~slmstack.errors.DeadlineExceeded`).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from slmstack.errors import DeadlineExceeded, Overloaded

_END = object()


class ThreadStream:
    """Iterate ``make()`` in a new thread; :meth:`next` returns its pieces on the loop.

    An exception raised by ``make`` or by the iterator is raised by :meth:`next`.
    ``on_end(iterator, seconds)`` runs in the thread once the iterator is closed (its
    generation over, whether it ran out, failed or was stopped), before :meth:`next`
    returns the end: the server meters the stream there.
    """

    def __init__(
        self,
        make: Callable[[], Iterator[str]],
        *,
        name: str = "stream",
        on_end: Callable[[Iterator[str] | None, float], None] | None = None,
    ):
        self._on_end = on_end
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(make,), name=name, daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed (shut down): nobody waits; stop generating
            self._stop.set()

    def _run(self, make: Callable[[], Iterator[str]]) -> None:
        start = time.perf_counter()
        pieces: Iterator[str] | None = None
        try:
            pieces = make()
            try:
                for piece in pieces:
                    if self._stop.is_set():
                        break
                    self._put(piece)
            finally:
                close = getattr(pieces, "close", None)
                if close is not None:
                    close()
        except BaseException as exc:  # handed to the consumer on the loop
            self._put(exc)
        if self._on_end is not None:
            try:
                self._on_end(pieces, time.perf_counter() - start)
            except Exception as exc:  # metering failed: the consumer hears of it
                self._put(exc)
        self._put(_END)

    async def next(self) -> str | None:
        """The next piece, or ``None`` at the end."""
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # later calls see the end too
            return None
        if isinstance(item, BaseException):
            raise item
        return str(item)

    def close(self) -> None:
        """Stop the thread after its current piece (the generation stops there)."""
        self._stop.set()


class StreamGate:
    """At most ``slots`` streams of one target at once, ``queue_size`` waiting.

    Use on one event loop: ``await gate.enter(deadline)``, then ``gate.leave()``.
    """

    def __init__(self, name: str, *, slots: int = 1, queue_size: int = 1024):
        self.name = name
        self.queue_size = queue_size
        self._slots = asyncio.Semaphore(slots)
        self._waiting = 0

    async def enter(self, deadline: float) -> None:
        """Take a slot, waiting until ``deadline`` (a :func:`time.monotonic` time)."""
        if self._waiting >= self.queue_size:
            raise Overloaded(
                f"{self._waiting} streams to {self.name} are waiting, the most the queue "
                "holds; retry shortly",
                retry_after_s=1.0,
            )
        self._waiting += 1
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await self._slots.acquire()
        except TimeoutError:
            raise DeadlineExceeded(
                f"the stream from {self.name} did not start before the request's deadline "
                f"({self._waiting} waiting); retry later or raise limits.deadline_s"
            ) from None
        finally:
            self._waiting -= 1

    def leave(self) -> None:
        """Give the slot back."""
        self._slots.release()


def sse(data: dict[str, Any] | str) -> bytes:
    """One Server-Sent Event carrying ``data`` (a JSON object, or ``[DONE]``)."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


__all__ = ["StreamGate", "ThreadStream", "sse"]
