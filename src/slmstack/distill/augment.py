"""Paraphrase augmentation: a local generator rewrites each labelled example a few ways.

For classifiers trained on tens of examples per label (issue 11 §2): each example is sent
to a generator with a request for ``n`` rewrites that keep its meaning, the output
constrained to a JSON list of strings (a grammar with llama.cpp), and every rewrite is
kept under the example's label after filtering:

- ``empty``: nothing but whitespace and punctuation;
- ``copy``: the original again, or an earlier rewrite, after case, spaces and punctuation
  are folded;
- ``too_long``: more than ``max_ratio`` times the original's words (plus 5): the
  generator wandered off, or answered the message instead of rewriting it;
- ``cut``: the generation hit its token budget before the JSON closed, so none of that
  example's rewrites could be read (counted once per example).

Rewrites are marked in ``source`` (``augmented:<the example's source>``) so that they can
be told apart, dropped or evaluated separately. The generator's mistakes become training
labels, so measure before trusting it: ``bench/fewshot_augment.py`` compares a classifier
trained with and without rewrites on the same draws, on validation data.

Example:
    >>> keep_rewrites("where is my card?", ["Where is my card", "My card has not come.", ""])
    (['My card has not come.'], {'copy': 1, 'empty': 1})
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence

from slmstack.backends import ChatMessage, CompletionRequest, parse_json_output, total_usage
from slmstack.backends.base import Backend
from slmstack.errors import ConfigError
from slmstack.progress import progress
from slmstack.types import Example, Usage

PROMPT = (
    "Rewrite the message below in {n} different ways. Each rewrite must ask for the same "
    "thing as the message, in other words, as a customer would write it. Answer with JSON: "
    '{{"rewrites": [...]}}.\n\nMessage: {text}'
)


def _schema(n: int) -> dict[str, object]:
    return {
        "type": "object",
        "required": ["rewrites"],
        "properties": {
            "rewrites": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "maxItems": n,
            }
        },
    }


def _fold(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def keep_rewrites(
    original: str, rewrites: Iterable[object], *, max_ratio: float = 3.0
) -> tuple[list[str], dict[str, int]]:
    """The usable rewrites of ``original``, in order, and how many of each kind were dropped."""
    seen = {_fold(original)}
    limit = max_ratio * len(original.split()) + 5
    kept: list[str] = []
    dropped: Counter[str] = Counter()
    for raw in rewrites:
        text = " ".join(str(raw).split())
        key = _fold(text)
        if not key:
            dropped["empty"] += 1
        elif key in seen:
            dropped["copy"] += 1
        elif len(text.split()) > limit:
            dropped["too_long"] += 1
        else:
            seen.add(key)
            kept.append(text)
    return kept, dict(sorted(dropped.items()))


def rewrite(
    backend: Backend, text: str, n: int, *, temperature: float = 0.7, seed: int = 0
) -> tuple[list[object] | None, Usage]:
    """The generator's ``n`` rewrites of ``text``, unfiltered, and the call's usage.

    The rewrites are ``None`` when the generation ran out of tokens before its JSON
    closed; any other failure raises.
    """
    request = CompletionRequest(
        [ChatMessage("user", PROMPT.format(n=n, text=text))],
        max_tokens=48 + (32 + 3 * len(text.split())) * n,
        temperature=temperature,
        seed=seed,
        json_schema=_schema(n),
    )
    completion = backend.complete(request)
    usage = total_usage([completion], completion.usage.latency_ms)  # by the model that answered
    if completion.finish_reason == "length":
        try:
            data = json.loads(completion.text)
        except json.JSONDecodeError:
            return None, usage
    else:
        data = parse_json_output(completion, request)
    rewrites = data.get("rewrites") if isinstance(data, dict) else None
    return (list(rewrites) if isinstance(rewrites, list) else []), usage


def augment(
    examples: Sequence[Example],
    backend: Backend,
    per_example: int,
    *,
    temperature: float = 0.7,
    seed: int = 0,
    max_ratio: float = 3.0,
    spent: Callable[[Usage, float], None] | None = None,
    positions: Sequence[int] | None = None,
) -> Iterator[tuple[Example, list[Example], dict[str, int]]]:
    """For each example, in order: the example, its kept rewrites as examples, the drops.

    Example ``i`` is generated with seed ``seed + positions[i]``: its position in the
    whole data set (default: ``i``), so that a resumed run, given only the examples not
    yet done and their positions, writes what one uninterrupted run would have.

    A generator that fails raises (:class:`~slmstack.errors.BackendError`); what was
    yielded before stays with the caller, so a long run can be written as it goes.
    ``spent(usage, seconds)`` is called after each generation, to cost it.
    """
    if isinstance(per_example, bool) or not isinstance(per_example, int) or per_example < 1:
        raise ConfigError(
            f"per_example must be an int >= 1 (rewrites asked of each example). "
            f"Got {per_example!r} instead."
        )
    if positions is not None and len(positions) != len(examples):
        raise ConfigError(f"positions holds {len(positions)} entries for {len(examples)} examples")
    where = list(range(len(examples))) if positions is None else list(positions)
    with progress() as bar:
        task = bar.add_task("rewrite examples", total=len(examples), info="")
        for ex, i in zip(examples, where, strict=True):
            began = time.perf_counter()
            raw, usage = rewrite(
                backend, ex.text, per_example, temperature=temperature, seed=seed + i
            )
            if spent is not None:
                spent(usage, time.perf_counter() - began)
            kept, dropped = keep_rewrites(ex.text, raw or [], max_ratio=max_ratio)
            if raw is None:
                dropped = {**dropped, "cut": 1}
            source = f"augmented:{ex.source or f'#{i + 1}'}"
            yield ex, [Example(t, ex.label, source) for t in kept], dropped
            bar.advance(task)


__all__ = ["PROMPT", "augment", "keep_rewrites", "rewrite"]
