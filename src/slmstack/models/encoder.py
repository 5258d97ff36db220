"""Load a transformer encoder and turn texts into pooled sentence vectors.

Truncation is never silent: :func:`tokenize` reports every text longer than the
model's window so that callers can attach a warning to its prediction.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slmstack.errors import ModelError
from slmstack.models.resolve import ModelSource


@dataclass(frozen=True)
class Tokenized:
    """Token ids of a batch (unpadded) and, for each text, its untruncated length."""

    input_ids: list[list[int]]
    lengths: list[int]
    max_length: int

    def truncation_warning(self, i: int) -> str | None:
        """A message when text ``i`` was cut to the model window, else ``None``."""
        if self.lengths[i] <= self.max_length:
            return None
        return (
            f"input truncated: {self.lengths[i]} tokens, the model window is "
            f"{self.max_length}; only the first {self.max_length} tokens were used"
        )


def load_tokenizer(path: Path) -> Any:
    """Load a fast tokenizer from a folder."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), use_fast=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load a tokenizer from {path}: {exc}") from exc


_QUIET_LOCK = threading.Lock()


def quiet_loading() -> None:
    """Switch off transformers' weight-loading bars (slmstack shows its own), only those.

    ``transformers.utils.logging.disable_progress_bar`` also switches off every
    ``huggingface_hub`` bar for the rest of the process, so a model downloaded after the
    first load (a second hub base, a LoRA base of hundreds of MB) downloaded for minutes
    without one. The hub's bars are left as they were.
    """
    from huggingface_hub.utils.tqdm import are_progress_bars_disabled, enable_progress_bars
    from transformers.utils import logging as hf_logging

    with _QUIET_LOCK:
        downloads_shown = not are_progress_bars_disabled()
        hf_logging.disable_progress_bar()
        if downloads_shown:
            enable_progress_bars()


def load_encoder(source: ModelSource) -> nn.Module:
    """Load the transformer body (no task head) from a resolved source."""
    from transformers import AutoModel

    quiet_loading()
    try:
        model = AutoModel.from_pretrained(
            str(source.path), use_safetensors=source.safetensors, dtype=torch.float32
        )
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load an encoder from {source.path}: {exc}") from exc
    model.eval()
    module: nn.Module = model
    return module


def model_window(tokenizer: Any, encoder: nn.Module, requested: int | None) -> int:
    """The usable token window: the requested length capped by the model's positions."""
    positions = int(getattr(encoder.config, "max_position_embeddings", 512))
    limit = min(positions, int(getattr(tokenizer, "model_max_length", positions) or positions))
    return min(requested, limit) if requested else limit


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> Tokenized:
    """Tokenize without padding, cutting each text to ``max_length`` and recording it."""
    ids = tokenizer(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
    lengths = [len(x) for x in ids]
    sep = tokenizer.sep_token_id
    cut: list[list[int]] = []
    for x in ids:
        if len(x) > max_length:
            x = x[: max_length - 1] + ([sep] if sep is not None else [x[max_length - 1]])
        cut.append(list(x))
    return Tokenized(cut, lengths, max_length)


def pad_batch(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence; return (input_ids, attention_mask)."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        mask[i, : len(x)] = 1
    return input_ids, mask


# What one more forward call costs, in padded tokens: the fixed per-call work (Python,
# dispatch, small kernels) of a MiniLM-sized encoder is about that of 32 tokens of compute.
CALL_TOKENS = 32


def length_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length (less padding, same results).

    The texts are sorted by length and cut into runs of at most ``batch_size`` where the
    padded tokens plus :data:`CALL_TOKENS` per batch are fewest (a dynamic programme over
    the cut points, O(n × batch_size)). Cutting a sorted batch of 64 at a fixed size pads
    every short text to the longest of its run; on the support-desk queries (8 to 25
    tokens) this cuts the padded tokens of a batch by about a third.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    sizes = [lengths[i] for i in order]
    best = [0] + [0] * n  # best[j]: least cost of the first j texts
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = max(1, sizes[j - 1])  # a run is padded to its last (longest) text
        options = range(max(0, j - batch_size), j)
        cut[j] = min(options, key=lambda i: best[i] + (j - i) * longest)
        best[j] = best[cut[j]] + (j - cut[j]) * longest + CALL_TOKENS
    runs = []
    while n > 0:
        runs.append(order[cut[n] : n])
        n = cut[n]
    yield from reversed(runs)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average token vectors over the attention mask."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (``avx512_bf16`` or ``amx_bf16`` flags)."""
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:  # not Linux: no way to tell, so no bf16
        return False
    flags = set(next((x for x in info.splitlines() if x.startswith("flags")), "").split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str) -> str:
    """``"auto"`` → ``"bf16"`` on CPUs with native bf16, else ``"fp32"``; others unchanged.

    Measured on BANKING77 (``bench/classify.py``): bf16 doubles ``head`` throughput on an
    AMD EPYC with ``avx512_bf16`` (1,016 against 508 texts/s, accuracy 92.89 against
    92.92), and is 2-5x *slower* than fp32 on an AVX2-only EPYC, so the choice follows the
    CPU's flags rather than a flag the user must remember. ``"bf16"`` asked for by name
    is kept on any CPU, with a ``RuntimeWarning`` (once) where the CPU lacks it.
    """
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    if precision == "bf16" and not native_bf16():
        _warn_emulated()
    return precision


_warned_emulated = False


def _warn_emulated() -> None:
    """Say once per process that bf16 asked for by name runs emulated, slower than fp32."""
    global _warned_emulated
    if _warned_emulated:
        return
    _warned_emulated = True
    warnings.warn(
        "precision='bf16' on a CPU without native bf16 (no avx512_bf16 or amx_bf16 flag): "
        "torch emulates it, 2-5x slower than fp32. Use precision 'fp32' or 'auto' (bf16 "
        "only where the CPU has it).",
        RuntimeWarning,
        stacklevel=3,
    )


def autocast(precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CPU (``"bf16"``, or ``"auto"`` on native-bf16 CPUs), or nothing."""
    if resolve_precision(precision) == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
