"""Overhead of the MicroBatcher, and batched against unbatched throughput of a real model.

Part 1 (always): ``--items`` one-item submissions through a no-op batch function, from
``--concurrency`` concurrent callers; reports wall time per item, batches and batch
sizes. The baseline is the same callers each sending its item to the executor directly
(``run_in_executor`` per item, what an app without a batcher does off the event loop).

Part 2 (``--model DIR``, a saved skill folder): the same load through the skill's
``predict``, batched against one call per request.

    .venv/bin/python bench/serve_batcher.py --items 10000 --concurrency 64
    .venv/bin/python bench/serve_batcher.py --items 2000 --model models/intent
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from slmstack.serve.batcher import MicroBatcher


async def _drive(call: Callable[[str], Any], texts: Sequence[str], concurrency: int) -> float:
    """Send every text through ``call`` from ``concurrency`` callers; return the wall time."""
    queue = list(reversed(texts))

    async def caller() -> None:
        while queue:
            await call(queue.pop())

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return time.perf_counter() - start


async def batched(
    fn: Callable[[list[str]], list[Any]],
    texts: Sequence[str],
    concurrency: int,
    max_batch: int,
    max_wait_ms: float,
) -> dict[str, Any]:
    sizes: list[int] = []
    batcher = MicroBatcher(
        "bench",
        fn,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        queue_size=max(1024, concurrency),
        on_batch=lambda n, s: sizes.append(n),
    )
    await batcher.start()
    wall = await _drive(lambda t: batcher.submit([t]), texts, concurrency)
    await batcher.close(5.0)
    return {
        "wall_s": wall,
        "us_per_item": wall / len(texts) * 1e6,
        "batches": len(sizes),
        "mean_batch": statistics.fmean(sizes),
        "items_per_s": len(texts) / wall,
    }


async def unbatched(
    fn: Callable[[list[str]], list[Any]], texts: Sequence[str], concurrency: int
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    wall = await _drive(lambda t: loop.run_in_executor(pool, fn, [t]), texts, concurrency)
    pool.shutdown()
    return {
        "wall_s": wall,
        "us_per_item": wall / len(texts) * 1e6,
        "batches": len(texts),
        "mean_batch": 1.0,
        "items_per_s": len(texts) / wall,
    }


def _show(title: str, row: dict[str, Any]) -> None:
    print(
        f"{title:<28} {row['wall_s']:8.3f} s  {row['us_per_item']:9.1f} us/item  "
        f"{row['items_per_s']:9.0f} items/s  {row['batches']:6d} batches  "
        f"mean batch {row['mean_batch']:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--model", help="a saved skill folder for part 2")
    args = parser.parse_args()
    texts = [f"text number {i}" for i in range(args.items)]

    def noop(items: list[str]) -> list[str]:
        return items

    print(f"no-op fn, {args.items} items, concurrency {args.concurrency}")
    _show("unbatched (executor/item)", asyncio.run(unbatched(noop, texts, args.concurrency)))
    _show(
        "MicroBatcher",
        asyncio.run(batched(noop, texts, args.concurrency, args.max_batch, args.max_wait_ms)),
    )
    if args.model:
        from slmstack import load

        skill = load(args.model)
        skill.predict(texts[:8])  # warm up
        print(
            f"\n{type(skill).__name__} at {args.model}, {args.items} items, "
            f"concurrency {args.concurrency}"
        )
        _show(
            "unbatched (predict/item)",
            asyncio.run(unbatched(skill.predict, texts, args.concurrency)),
        )
        _show(
            "MicroBatcher",
            asyncio.run(
                batched(skill.predict, texts, args.concurrency, args.max_batch, args.max_wait_ms)
            ),
        )


if __name__ == "__main__":
    main()
